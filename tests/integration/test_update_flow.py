"""The whole story over HTTP against real processes: register, update, poll, report."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mpt.artifacts import load_model
from mpt.formats import load_dataset
from mpt.recipe import Recipe
from mpt.update import evaluate, prepare_data
from tests.integration.conftest import FASHION_MNIST, SMALL_RECIPE, Api

OLD = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat"]


def _download_model(api: Api, model_id: int, folder: Path):
    response = api.http.get(f"/models/{model_id}/weights")
    assert response.status_code == 200, response.text
    path = folder / f"model-{model_id}.safetensors"
    path.write_bytes(response.content)
    return load_model(path)


def _full_story(api: Api, tmp_path: Path, family: str) -> None:
    dataset = api.register_dataset(name=f"fmnist-{family}")
    assert dataset["status"] == "ready", dataset
    assert dataset["classes"][:5] == OLD and dataset["train_size"] == 60000 and dataset["test_size"] == 10000

    v1 = api.first_version(dataset_id=dataset["id"], family=family, classes=OLD)
    assert v1["version"] == 1 and v1["classes"] == OLD

    job = api.submit(
        {
            "base_model_id": v1["id"],
            "dataset_id": dataset["id"],
            "method": "mpt-kl",
            "method_params": {"bias": 4.0},  # one student (no sweep): this story is about the report
            "recipe": SMALL_RECIPE,
            "seed": 0,
        }
    )
    assert job["status"] == "queued"
    job = api.wait_job(job["id"])
    assert job["status"] == "succeeded", job
    assert any(event["phase"] == "training" for event in job["events"]), job["events"]
    v2 = api.ok(api.http.get(f"/models/{job['result_model_id']}"))
    assert v2["version"] == 2 and v2["parent_id"] == v1["id"] and v2["classes"][:5] == OLD

    flips = api.ok(api.http.get(f"/models/{v2['id']}/flips"))
    figures = flips["figures"]
    # Recompute the report from the stored weights, directly through the engine.
    new_model = _download_model(api, v2["id"], tmp_path)
    old_model = _download_model(api, v1["id"], tmp_path)
    data = prepare_data(
        load_dataset(FASHION_MNIST), old_classes=OLD, classes=None, recipe=Recipe.from_dict(SMALL_RECIPE), seed=0
    )
    summary, ledger = evaluate(
        model=new_model,
        baseline=old_model,
        evaluation=data.evaluation,
        k_old=5,
        device=__import__("torch").device("cpu"),
    )
    expected = summary.to_dict()  # the JSON form, whose scopes the API returns as they are
    for scope in ("all", "old_classes"):
        for key in ("samples", "negative_flips", "positive_flips", "old_correct", "new_correct"):
            assert figures["scopes"][scope][key] == expected["scopes"][scope][key], (scope, key)
        assert figures["scopes"][scope]["nfr"] == pytest.approx(expected["scopes"][scope]["nfr"])
    assert flips["reference"] is not None, "the independent retrain's figures stand beside MPT's"
    assert flips["samples"]["total"] == len(ledger)
    # The reference is a download of its own, and its weights give the reference figures.
    response = api.http.get(job["reference_weights_url"])
    assert response.status_code == 200, response.text
    (tmp_path / "reference.safetensors").write_bytes(response.content)
    reference, _ = evaluate(
        model=load_model(tmp_path / "reference.safetensors", sha256=response.headers["x-checksum-sha256"]),
        baseline=old_model,
        evaluation=data.evaluation,
        k_old=5,
        device=__import__("torch").device("cpu"),
    )
    assert flips["reference"]["scopes"]["all"]["negative_flips"] == reference.scopes.all.negative_flips

    negative = api.ok(api.http.get(f"/models/{v2['id']}/flips", params={"kind": "negative", "page_size": 5}))
    # The update flipped some samples (fixed seeds): the filter has rows to check, and they
    # are the engine ledger's first negative flips in evaluation-sample order.
    expected_negatives = sorted(row["sample_index"] for row in ledger.rows() if row["kind"] == "negative")
    assert len(expected_negatives) == figures["scopes"]["all"]["negative_flips"] > 0
    items = negative["samples"]["items"]
    assert negative["samples"]["total"] == len(expected_negatives)
    assert [row["sample_index"] for row in items] == expected_negatives[:5]
    assert all(row["kind"] == "negative" for row in items)
    image = api.http.get(f"/models/{v2['id']}/flips/{items[0]['sample_index']}/image")
    assert image.status_code == 200 and image.headers["content-type"] == "image/png"
    csv = api.http.get(f"/models/{v2['id']}/flips", params={"format": "csv"})
    assert csv.status_code == 200 and csv.text.count("\n") == len(ledger) + 1

    # A later job on the same data, architecture, recipe and seed reuses the reference.
    again = api.wait_job(
        api.submit(
            {
                "base_model_id": v1["id"],
                "dataset_id": dataset["id"],
                "method": "pct-kl",
                "recipe": SMALL_RECIPE,
                "seed": 0,
            }
        )["id"]
    )
    assert again["status"] == "succeeded", again
    assert again["reference_id"] == job["reference_id"] is not None
    assert not any(event["phase"] == "reference" for event in again["events"])


def test_full_story_on_postgresql_and_redis(pg_stack, tmp_path):
    _full_story(Api(pg_stack), tmp_path, "fmnist-pg")


def test_full_story_on_embedded_default(embedded_stack, tmp_path):
    _full_story(Api(embedded_stack), tmp_path, "fmnist-embedded")


def test_cancel_running_job_registers_nothing(pg_stack):
    api = Api(pg_stack)
    dataset = api.register_dataset(name="fmnist-cancel")
    v1 = api.first_version(dataset_id=dataset["id"], family="cancel", classes=OLD)
    models_before = api.ok(api.http.get("/models", params={"family": "cancel"}))["total"]
    long_recipe = SMALL_RECIPE | {"epochs": 200, "train_samples_per_class": 300}
    job = api.submit(
        {
            "base_model_id": v1["id"],
            "dataset_id": dataset["id"],
            "method": "mpt-kl",
            "method_params": {"bias": 4.0},
            "recipe": long_recipe,
        }
    )
    api.wait_job(job["id"], statuses=("running", "evaluating"), timeout_s=120)
    api.ok(api.http.post(f"/updates/{job['id']}/cancel"), 200, 202)
    job = api.wait_job(job["id"], timeout_s=120)
    assert job["status"] == "cancelled" and job["result_model_id"] is None
    assert api.ok(api.http.get("/models", params={"family": "cancel"}))["total"] == models_before
    artifacts = Path(pg_stack.env["FLIPGUARD_ARTIFACT_ROOT"])
    assert not (artifacts / "checkpoints" / f"job-{job['id']}").exists()
    assert not list((artifacts / "models").glob(f"job-{job['id']}-*"))


def test_failed_job_has_readable_reason_and_registers_nothing(pg_stack, tmp_path):
    api = Api(pg_stack)
    dataset = api.register_dataset(name="fmnist-fail")
    v1 = api.first_version(dataset_id=dataset["id"], family="failing", classes=OLD)
    # The deployed weights get corrupted on disk after registration.
    weights = Path(pg_stack.env["FLIPGUARD_ARTIFACT_ROOT"]) / v1["artifact_uri"]
    original = weights.read_bytes()
    weights.write_bytes(original[:-100] + b"\0" * 100)
    try:
        job = api.submit(
            {
                "base_model_id": v1["id"],
                "dataset_id": dataset["id"],
                "method": "mpt-kl",
                "method_params": {"bias": 4.0},
                "recipe": SMALL_RECIPE,
            }
        )
        job = api.wait_job(job["id"])
    finally:
        weights.write_bytes(original)
    assert job["status"] == "failed"
    assert "sha256 does not match" in job["error"]
    assert api.ok(api.http.get("/models", params={"family": "failing"}))["total"] == 1


def test_update_with_data_lacking_an_old_class_is_refused(pg_stack, tmp_path):
    api = Api(pg_stack)
    fmnist = api.register_dataset(name="fmnist-for-missing")
    v1 = api.first_version(dataset_id=fmnist["id"], family="missing", classes=OLD)
    # A data set with only some of the old model's classes.
    data_root = Path(pg_stack.env["FLIPGUARD_DATA_ROOTS"].split('"')[3])
    data_root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    np.savez(
        data_root / "partial.npz",
        classes=np.array(["Trouser", "Bag"]),
        x_train=rng.integers(0, 255, (40, 28, 28), dtype=np.uint8),
        y_train=np.arange(40) % 2,
        x_test=rng.integers(0, 255, (20, 28, 28), dtype=np.uint8),
        y_test=np.arange(20) % 2,
    )
    partial = api.register_dataset(name="partial", uri=str(data_root / "partial.npz"), data_format="npz")
    assert partial["status"] == "ready", partial
    response = api.http.post(
        "/updates", json={"base_model_id": v1["id"], "dataset_id": partial["id"], "method": "mpt-kl"}
    )
    assert response.status_code == 422
    detail = response.json()["detail"][0]
    assert detail["loc"][-1] == "dataset_id" and "T-shirt/top" in detail["msg"] and "Coat" in detail["msg"]


def test_non_finite_loss_fails_the_job_and_registers_nothing(pg_stack):
    api = Api(pg_stack)
    dataset = api.register_dataset(name="fmnist-nan")
    v1 = api.first_version(dataset_id=dataset["id"], family="diverging", classes=OLD)
    # A vanishing temperature turns the distillation's softmax into NaN.
    job = api.wait_job(
        api.submit(
            {
                "base_model_id": v1["id"],
                "dataset_id": dataset["id"],
                "method": "mpt-kl",
                "method_params": {"tau": 1e-300, "bias": 4.0},
                "recipe": SMALL_RECIPE,
            }
        )["id"]
    )
    assert job["status"] == "failed" and "non-finite" in job["error"], job
    assert api.ok(api.http.get("/models", params={"family": "diverging"}))["total"] == 1


def test_labels_out_of_range_fail_the_data_set_with_a_reason(pg_stack):
    api = Api(pg_stack)
    data_root = Path(pg_stack.env["FLIPGUARD_DATA_ROOTS"].split('"')[3])
    data_root.mkdir(parents=True, exist_ok=True)
    images = np.zeros((6, 28, 28), dtype=np.uint8)
    np.savez(
        data_root / "bad-labels.npz",
        classes=np.array(["a", "b"]),
        x_train=images,
        y_train=np.array([0, 1, 0, 1, 0, 7]),
        x_test=images,
        y_test=np.zeros(6, dtype=np.int64),
    )
    dataset = api.register_dataset(name="bad-labels", uri=str(data_root / "bad-labels.npz"), data_format="npz")
    assert dataset["status"] == "failed" and "labels must lie in 0..1" in dataset["error"], dataset
    response = api.http.post(
        "/updates",
        json={"family": "bad", "architecture": "small_cnn", "dataset_id": dataset["id"], "method": "independent"},
    )
    assert response.status_code == 409 and response.json()["detail"][0]["loc"][-1] == "dataset_id"
