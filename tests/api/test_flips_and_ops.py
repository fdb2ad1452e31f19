import csv
import io

import pytest
from api_helpers import assert_error
from PIL import Image


def test_flip_report_with_reference_and_filters(client, updated):
    base, model = updated
    report = client.get(f"/models/{model.id}/flips").json()
    assert report["baseline_model_id"] == base["id"]
    assert report["figures"]["scopes"]["old_classes"]["negative_flips"] == 2
    assert report["figures"]["accuracy"]["new_classes"] == 0.6
    assert report["reference"]["scopes"]["old_classes"]["negative_flips"] == 5
    assert report["samples"]["total"] == 4
    first = report["samples"]["items"][0]
    assert (first["label_name"], first["new_prediction_name"], first["is_intrusion"]) == ("sandal", "slipper", True)
    assert first["image_url"] == f"/models/{model.id}/flips/4/image"

    def total(**params):
        return client.get(f"/models/{model.id}/flips", params=params).json()["samples"]["total"]

    assert total(kind="negative") == 2
    assert total(label="sneaker") == 2 and total(label=1) == 2
    assert total(intrusion="true") == 1
    paged = client.get(f"/models/{model.id}/flips", params={"page": 2, "page_size": 3}).json()
    assert [row["sample_index"] for row in paged["samples"]["items"]] == [15]
    assert_error(client.get(f"/models/{model.id}/flips", params={"page_size": 501}), 422, ["query", "page_size"])
    assert_error(client.get(f"/models/{model.id}/flips", params={"label": "cat"}), 422, ["query", "label"])
    assert_error(client.get(f"/models/{model.id}/flips", params={"kind": "sideways"}), 422, ["query", "kind"])
    assert_error(
        client.get(f"/models/{model.id}/flips", params={"against": model.id}), 422, ["query", "against"], "itself"
    )
    assert_error(client.get(f"/models/{base['id']}/flips"), 404, ["query", "against"], "first version")

    lineage = client.get(f"/models/{model.id}/lineage").json()
    assert lineage[0]["nfr_old_classes"] == pytest.approx(2 / 30) and lineage[0]["classes"] == 4
    # The uploaded v1 has no report of its own: its accuracy is the one v2's report measured for it.
    assert lineage[1]["accuracy"] == pytest.approx(25 / 30) and lineage[1]["nfr_old_classes"] is None
    assert (
        lineage[1]["accuracy_measured_on"]
        == f"30 test samples of its 3 classes, as the baseline of model {model.id}'s report"
    )
    listed = {m["id"]: m for m in client.get("/models").json()["items"]}
    assert listed[model.id]["figures"]["nfr_old_classes"] == pytest.approx(2 / 30)
    assert listed[base["id"]]["figures"]["measured_as"] == "baseline"


def test_flip_ledger_as_csv(client, updated):
    _, model = updated
    response = client.get(f"/models/{model.id}/flips", params={"format": "csv", "kind": "positive"})
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert [row["sample_index"] for row in rows] == ["12", "15"]
    assert rows[0]["label_name"] == "boot" and rows[0]["kind"] == "positive"


def test_flip_image_is_an_enlarged_png(client, updated):
    _, model = updated
    response = client.get(f"/models/{model.id}/flips/9/image")
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    image = Image.open(io.BytesIO(response.content))
    assert image.size == (224, 224) and image.mode == "L"
    assert_error(client.get(f"/models/{model.id}/flips/5/image"), 404, ["path", "sample_index"])


def test_health_metrics_and_openapi(client, session, updated):
    from db.workers.service import record_heartbeat

    record_heartbeat(session, name="gpu0@host", queues=["training"])
    health = client.get("/health")
    assert health.status_code == 200 and health.json()["status"] == "ok", health.text
    assert (health.json()["database"], health.json()["broker"]) == ("ok", "ok")
    client.get("/models/999")
    metrics = client.get("/metrics").text
    assert 'flipguard_update_jobs{status="succeeded"} 1.0' in metrics
    assert 'route="/models/{model_id}",status="404"' in metrics
    assert_error(client.get("/nowhere"), 404, [])
    schema = client.get("/openapi.json").json()
    assert set(schema["paths"]["/models"]["post"]["requestBody"]["content"]) == {
        "multipart/form-data",
        "application/json",
    }


def test_api_never_imports_torch():
    import subprocess
    import sys

    code = "import sys, api.main, api.cli.app; assert 'torch' not in sys.modules and 'mpt' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_cli_prints_flip_table_and_watches_a_finished_job(client, updated, monkeypatch):
    """The client CLI in process against the test app (tests/integration/test_cli_commands.py runs it as a
    subprocess against a real stack)."""
    from typer.testing import CliRunner

    from api.cli import client as cli_client
    from api.cli.app import app as cli_app

    _, model = updated
    monkeypatch.setattr(cli_client, "make_client", lambda url, token: client)
    runner = CliRunner()
    result = runner.invoke(cli_app, ["flips", str(model.id)])
    assert result.exit_code == 0, result.output
    assert "NFR, old classes" in result.output and "6.67% (2/30)" in result.output and "16.67% (5/30)" in result.output
    # The job's gate (max_nfr 0.5) passed: exit 0 and the registered version.
    result = runner.invoke(cli_app, ["updates", "watch", str(model.job_id), "--interval", "0"])
    assert result.exit_code == 0, result.output
    assert "succeeded" in result.output and f"registered model {model.id}" in result.output
    result = runner.invoke(cli_app, ["models", "list", "--family", "shoes"])
    assert result.exit_code == 0 and "candidate" in result.output and "6.67%" in result.output
