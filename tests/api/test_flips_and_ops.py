import csv
import io

import numpy as np
import pytest
from PIL import Image

from api_helpers import assert_error, model_file, ready_dataset, upload
from db.jobs.service import claim_job, complete_job, create_job

CLASSES = ["sandal", "sneaker", "boot", "slipper"]


def scope(samples, negative, positive, old_correct, new_correct):
    nfr = negative / samples
    return {"samples": samples, "negative_flips": negative, "positive_flips": positive,
            "old_correct": old_correct, "new_correct": new_correct, "nfr": nfr,
            "pfr": positive / samples, "relative_nfr": nfr * 3,
            "old_accuracy": old_correct / samples, "new_accuracy": new_correct / samples}


def summary(negative_old):
    """An mpt.flips.flip_report summary (hand-written: the API tests run without torch)."""
    return {
        "classes": CLASSES, "k_old": 3,
        "scopes": {"all": scope(40, negative_old, 2, 25, 30), "old_classes": scope(30, negative_old, 2, 25, 24)},
        "new_class_accuracy": 0.6, "new_class_samples": 10, "both_correct": 22, "both_wrong": 5,
        "btc": 0.88, "bec": 0.4, "intrusion_flips": 1,
        "per_class": [{"index": i, "name": name, "is_new": i >= 3, "samples": 10, "old_correct": 6,
                       "new_correct": 7, "negative_flips": 1, "positive_flips": 1, "intrusion_flips": 0,
                       "nfr": 0.1, "old_accuracy": 0.6, "new_accuracy": 0.7} for i, name in enumerate(CLASSES)],
        "transitions": [{"kind": "negative", "old_prediction": 0, "new_prediction": 3, "count": 1,
                         "intrusion": True}],
    }


LEDGER = [
    {"sample_index": 4, "label": 0, "old_prediction": 0, "new_prediction": 3, "old_confidence": 0.9,
     "new_confidence": 0.1, "kind": "negative"},
    {"sample_index": 9, "label": 1, "old_prediction": 1, "new_prediction": 2, "old_confidence": 0.8,
     "new_confidence": 0.3, "kind": "negative"},
    {"sample_index": 12, "label": 2, "old_prediction": 1, "new_prediction": 2, "old_confidence": 0.2,
     "new_confidence": 0.7, "kind": "positive"},
    {"sample_index": 15, "label": 1, "old_prediction": 0, "new_prediction": 1, "old_confidence": 0.3,
     "new_confidence": 0.6, "kind": "positive"},
]


@pytest.fixture
def updated(client, session, settings, tmp_path):
    """A base model and its update, registered through the worker's db functions."""
    base = upload(client, model_file(tmp_path / "v1.safetensors", classes=CLASSES[:3])).json()
    dataset = ready_dataset(session, classes=CLASSES)
    job, _ = create_job(session, base_model_id=base["id"], family=None, architecture=None,
                        dataset_id=dataset.id, classes=None, method="mpt-kl", method_params={},
                        recipe={}, gate={"max_nfr": 0.5, "auto_promote": False}, seed=0)
    claim_job(session, job_id=job.id, worker_id="w", heartbeat_timeout_s=60)
    images = settings.artifact_path("reports/flips.npz")  # uris are relative to the store
    images.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.arange(4 * 1 * 8 * 8, dtype=np.uint8).reshape(4, 1, 8, 8)
    np.savez(images, sample_index=np.array([row["sample_index"] for row in LEDGER]), images=pixels)
    model = complete_job(
        session, job_id=job.id, images_uri="reports/flips.npz", ledger=LEDGER, report=summary(2),
        reference_report=summary(5),
        model={"artifact_uri": "models/v2.safetensors", "sha256": "0" * 64,
               "architecture": "small_cnn", "classes": CLASSES, "recipe": {}, "method": "mpt-kl"},
    )
    return base, model


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
    assert_error(client.get(f"/models/{model.id}/flips", params={"page_size": 501}), 422,
                 ["query", "page_size"])
    assert_error(client.get(f"/models/{model.id}/flips", params={"label": "cat"}), 422, ["query", "label"])
    assert_error(client.get(f"/models/{model.id}/flips", params={"kind": "sideways"}), 422, ["query", "kind"])
    assert_error(client.get(f"/models/{model.id}/flips", params={"against": model.id}), 404,
                 ["query", "against"])
    assert_error(client.get(f"/models/{base['id']}/flips"), 404, ["query", "against"])

    lineage = client.get(f"/models/{model.id}/lineage").json()
    assert lineage[0]["nfr_old_classes"] == pytest.approx(2 / 30) and lineage[1]["accuracy"] is None


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


def test_health_metrics_and_openapi(client, updated):
    health = client.get("/health")
    assert health.status_code == 200 and health.json() == {"status": "ok", "database": "ok", "broker": "ok"}
    client.get("/models/999")
    metrics = client.get("/metrics").text
    assert 'flipguard_update_jobs{status="succeeded"} 1.0' in metrics
    assert 'route="/models/{model_id}",status="404"' in metrics
    assert_error(client.get("/nowhere"), 404, [])
    schema = client.get("/openapi.json").json()
    assert set(schema["paths"]["/models"]["post"]["requestBody"]["content"]) == {
        "multipart/form-data", "application/json"}


def test_api_never_imports_torch():
    import subprocess
    import sys

    code = "import sys, api.main, api.cli; assert 'torch' not in sys.modules and 'mpt' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_cli_prints_flip_table_and_watches_a_finished_job(client, updated, capsys):
    from api import cli

    _, model = updated
    parser = cli.build_parser()
    args = parser.parse_args(["flips", str(model.id)])
    args.run(client, args)
    table = capsys.readouterr().out
    assert "NFR (old classes)" in table and "6.67% (2/30)" in table and "16.67% (5/30)" in table
    args = parser.parse_args(["update", "watch", str(model.job_id), "--interval", "0"])
    args.run(client, args)
    assert "100.0% succeeded" in capsys.readouterr().out
    args = parser.parse_args(["models", "list", "--family", "shoes"])
    args.run(client, args)
    assert "candidate" in capsys.readouterr().out
