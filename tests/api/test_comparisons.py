"""Flip reports of any two versions: queued on demand (202), computed once, cached, retried."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from api_helpers import CLASSES, LEDGER, assert_error, broker_messages, model_file, summary, upload
from sqlalchemy import update

from db.base import utcnow
from db.comparisons.models import Comparison
from db.comparisons.service import claim_comparison, complete_comparison, fail_comparison


def compare_messages(settings) -> list[dict]:
    return [m for m in broker_messages(settings) if m["headers"]["task"] == "flipguard.compare_models"]


def test_a_pair_without_a_report_is_computed_once_and_cached(client, updated, settings, session, tmp_path):
    _, v2 = updated
    v3 = upload(client, model_file(tmp_path / "v3.safetensors", classes=CLASSES[:3])).json()

    pending = client.get(f"/models/{v3['id']}/flips", params={"against": v2.id})
    assert pending.status_code == 202, pending.text
    comparison = pending.json()
    assert pending.headers["location"] == f"/comparisons/{comparison['id']}"
    # v2 was trained by a job and knows every class of v3: its evaluation split serves both.
    assert comparison["status"] == "queued" and comparison["split_model_id"] == v2.id
    assert comparison["report_url"] == f"/models/{v3['id']}/flips?against={v2.id}"
    assert len(compare_messages(settings)) == 1
    again = client.get(f"/models/{v3['id']}/flips", params={"against": v2.id})
    assert again.status_code == 202 and again.json()["id"] == comparison["id"]
    assert len(compare_messages(settings)) == 1, "a second request does not compute it again"
    assert client.get(f"/comparisons/{comparison['id']}").json()["status"] == "queued"

    claimed = claim_comparison(session, comparison_id=comparison["id"], stale_after_s=settings.comparison_timeout_s)
    assert claimed is not None
    complete_comparison(
        session,
        comparison_id=claimed.id,
        attempt=claimed.attempts,
        summary=summary(1),
        ledger=LEDGER[:2],
        images_uri=None,
    )
    report = client.get(f"/models/{v3['id']}/flips", params={"against": v2.id})
    assert report.status_code == 200, report.text
    assert report.json()["baseline_model_id"] == v2.id and report.json()["samples"]["total"] == 2
    assert client.get(f"/comparisons/{comparison['id']}").json()["status"] == "succeeded"
    created = client.post("/comparisons", json={"model_id": v3["id"], "baseline_model_id": v2.id})
    assert created.status_code == 200 and created.json()["report_id"] == report.json()["report_id"]
    assert len(compare_messages(settings)) == 1


def test_a_stored_update_report_answers_a_comparison_at_once(client, updated, settings):
    base, v2 = updated
    response = client.post("/comparisons", json={"model_id": v2.id, "baseline_model_id": base["id"]})
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "succeeded" and compare_messages(settings) == []


def test_a_failed_comparison_says_why_and_post_retries_it(client, updated, settings, session, tmp_path):
    _, v2 = updated
    v3 = upload(client, model_file(tmp_path / "v3.safetensors", classes=CLASSES[:3])).json()
    comparison = client.get(f"/models/{v2.id}/flips", params={"against": v3["id"]}).json()
    claimed = claim_comparison(session, comparison_id=comparison["id"], stale_after_s=settings.comparison_timeout_s)
    assert claimed is not None
    fail_comparison(session, comparison_id=claimed.id, attempt=claimed.attempts, error="data set 1 changed on disk")
    assert_error(
        client.get(f"/models/{v2.id}/flips", params={"against": v3["id"]}), 409, ["query", "against"], "changed on disk"
    )
    retried = client.post("/comparisons", json={"model_id": v2.id, "baseline_model_id": v3["id"]})
    assert retried.status_code == 202 and retried.json()["status"] == "queued"
    assert len(compare_messages(settings)) == 2


def test_reading_a_comparison_whose_message_was_lost_sends_nothing(client, updated, settings, session, tmp_path):
    # Re-sending a lost comparison is the worker's reconciler's job (tests/worker/test_reconciler.py):
    # however long ago a pending comparison was queued or claimed, a read answers 202 and sends nothing.
    _, v2 = updated
    v3 = upload(client, model_file(tmp_path / "v3.safetensors", classes=CLASSES[:3])).json()
    comparison = client.get(f"/models/{v3['id']}/flips", params={"against": v2.id}).json()
    for message in Path(settings.broker_url.removeprefix("filesystem://")).glob("*.msg"):
        message.unlink()  # the broker lost it
    long_ago = utcnow() - timedelta(days=1)

    def age(**values) -> None:
        session.execute(update(Comparison).where(Comparison.id == comparison["id"]).values(**values))
        session.commit()

    age(created_at=long_ago)
    for read in (
        lambda: client.get(f"/models/{v3['id']}/flips", params={"against": v2.id}),
        lambda: client.post("/comparisons", json={"model_id": v3["id"], "baseline_model_id": v2.id}),
    ):
        assert read().json()["status"] == "queued"
    assert claim_comparison(session, comparison_id=comparison["id"], stale_after_s=settings.comparison_timeout_s)
    age(started_at=long_ago)
    pending = client.get(f"/models/{v3['id']}/flips", params={"against": v2.id})
    assert pending.status_code == 202 and pending.json()["status"] == "running"
    assert client.get(f"/comparisons/{comparison['id']}").json()["status"] == "running"
    assert compare_messages(settings) == []


def test_pairs_that_cannot_be_compared_are_refused_at_once(client, updated, settings, tmp_path):
    base, v2 = updated
    other = upload(client, model_file(tmp_path / "cats.safetensors", classes=("cat", "dog")), family="cats").json()
    assert_error(
        client.get(f"/models/{other['id']}/flips", params={"against": v2.id}), 422, ["query", "against"], "nest"
    )
    v3 = upload(client, model_file(tmp_path / "v3.safetensors", classes=CLASSES[:3])).json()
    assert_error(
        client.get(f"/models/{v3['id']}/flips", params={"against": base["id"]}),
        422,
        ["query", "against"],
        "neither model",
    )
    assert_error(
        client.post("/comparisons", json={"model_id": v2.id, "baseline_model_id": 999}),
        404,
        ["body", "baseline_model_id"],
    )
    assert_error(client.get("/comparisons/77"), 404, ["path", "comparison_id"])
    assert compare_messages(settings) == []


def test_reference_weights_of_a_job(client, updated, session, settings, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from api.cli import client as cli_client
    from api.cli.app import app as cli_app
    from api.storage import file_sha256
    from db.references.service import add_reference
    from db.updates.models import UpdateJob

    _, v2 = updated
    job = client.get(f"/updates/{v2.job_id}").json()
    assert job["reference_id"] is None and job["reference_weights_url"] is None
    assert_error(client.get(f"/updates/{v2.job_id}/reference/weights"), 404, ["path", "job_id"], "no independent")
    monkeypatch.setattr(cli_client, "make_client", lambda url, token: client)
    runner = CliRunner()
    target = tmp_path / "reference.safetensors"
    missing = runner.invoke(cli_app, ["updates", "reference", str(v2.job_id), "-o", str(target)])
    assert missing.exit_code == 1 and not target.exists()
    path = settings.artifact_path("references/key.safetensors")
    path.parent.mkdir(parents=True, exist_ok=True)
    model_file(path, classes=CLASSES)
    reference = add_reference(
        session, cache_key="key", artifact_uri="references/key.safetensors", sha256=file_sha256(path),
        architecture="small_cnn", classes=CLASSES,
    )  # fmt: skip
    session.get(UpdateJob, v2.job_id).reference_model_id = reference.id
    session.commit()
    job = client.get(f"/updates/{v2.job_id}").json()
    assert job["reference_id"] == reference.id
    assert job["reference_weights_url"] == f"/updates/{v2.job_id}/reference/weights"
    weights = client.get(job["reference_weights_url"])
    assert weights.status_code == 200 and weights.content == path.read_bytes()
    assert weights.headers["x-checksum-sha256"] == reference.sha256
    # `updates reference` writes the same file (sha256 checked), as `models download` does.
    written = runner.invoke(cli_app, ["updates", "reference", str(v2.job_id), "-o", str(target)])
    assert written.exit_code == 0, written.output
    assert target.read_bytes() == path.read_bytes() and reference.sha256 in written.output


def test_dataset_samples(client, session, settings):
    import numpy as np
    from api_helpers import ready_dataset

    from db.datasets.service import mark_dataset_ready

    dataset = ready_dataset(session)
    assert client.get(f"/datasets/{dataset.id}/samples").json()["items"] == []
    path = settings.artifact_path("datasets/d.npz")
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, labels=np.array([0, 2]), images=np.zeros((2, 1, 28, 28), dtype=np.uint8))
    mark_dataset_ready(
        session, dataset_id=dataset.id, classes=list(dataset.classes), train_size=80, test_size=20,
        image_shape=[1, 28, 28], digest="abc123", samples_uri="datasets/d.npz",
    )  # fmt: skip
    items = client.get(f"/datasets/{dataset.id}/samples").json()["items"]
    assert [(s["label_name"], s["image_url"]) for s in items] == [
        ("sandal", f"/datasets/{dataset.id}/samples/0/image"),
        ("boot", f"/datasets/{dataset.id}/samples/1/image"),
    ]
    image = client.get(items[1]["image_url"])
    assert image.status_code == 200 and image.headers["content-type"] == "image/png"
    assert_error(client.get(f"/datasets/{dataset.id}/samples/2/image"), 404, ["path", "position"])
