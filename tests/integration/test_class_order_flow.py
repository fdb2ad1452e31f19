"""Class mapping by name through the service: the real API and worker processes (embedded
default), a base model trained on one data set (owl, cat, dog) and updated on another that
lists those classes in another order among new ones. The stored report, its per-class rows
and its ledger must agree with an evaluation by class name of the downloaded weights."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from mpt.artifacts import load_model
from mpt.formats import load_dataset
from tests.by_name import assert_summary_matches, evaluate_by_name, predicted_names, striped_by_name
from tests.integration.conftest import Api

OLD_DATA_CLASSES = ["owl", "cat", "dog"]
UPDATE_DATA_CLASSES = ["emu", "dog", "yak", "owl", "ant", "cat"]
RECIPE = {"epochs": 2, "batch_size": 32, "lr": 0.05, "crop_padding": 1}


def write_npz(path: Path, classes: list[str], *, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    x_train, y_train = striped_by_name(classes, 40, rng)
    x_test, y_test = striped_by_name(classes, 25, rng)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test, classes=np.array(classes))
    return path


def download(api: Api, model_id: int, folder: Path):
    response = api.http.get(f"/models/{model_id}/weights")
    assert response.status_code == 200, response.text
    path = folder / f"model-{model_id}.safetensors"
    path.write_bytes(response.content)
    return load_model(path)


def all_flips(api: Api, model_id: int) -> list[dict]:
    rows, page = [], 1
    while True:
        body = api.ok(api.http.get(f"/models/{model_id}/flips", params={"page": page, "page_size": 100}))
        rows += body["samples"]["items"]
        if len(rows) >= body["samples"]["total"]:
            return rows
        page += 1


def test_an_update_on_data_listing_the_old_classes_in_another_order(embedded_stack, tmp_path):
    api = Api(embedded_stack)
    data_root = Path(json.loads(embedded_stack.env["FLIPGUARD_DATA_ROOTS"])[1])
    old_path = write_npz(data_root / "by-name-old.npz", OLD_DATA_CLASSES, seed=1)
    update_path = write_npz(data_root / "by-name-update.npz", UPDATE_DATA_CLASSES, seed=2)
    old_data = api.register_dataset(name="by-name-old", uri=str(old_path), data_format="npz")
    update_data = api.register_dataset(name="by-name-update", uri=str(update_path), data_format="npz")
    assert update_data["status"] == "ready" and update_data["classes"] == UPDATE_DATA_CLASSES

    v1 = api.first_version(dataset_id=old_data["id"], family="by-name", classes=OLD_DATA_CLASSES, recipe=RECIPE)
    job = api.wait_job(
        api.submit(
            {
                "base_model_id": v1["id"],
                "dataset_id": update_data["id"],
                "method": "mpt-kl",
                "recipe": RECIPE,
                "seed": 0,
            }
        )["id"]
    )
    assert job["status"] == "succeeded", job
    v2 = api.ok(api.http.get(f"/models/{job['result_model_id']}"))
    assert v2["classes"] == ["owl", "cat", "dog", "emu", "yak", "ant"]

    report = api.ok(api.http.get(f"/models/{v2['id']}/flips"))
    assert report["classes"] == v2["classes"] and report["k_old"] == 3

    # The evaluation by name: the job evaluated every test sample, in the data set's order.
    bundle = load_dataset(update_path)
    old_model, new_model = download(api, v1["id"], tmp_path), download(api, v2["id"], tmp_path)
    images = bundle.test.images
    true = [bundle.classes[label] for label in bundle.test.labels.tolist()]
    old = predicted_names(old_model.net, old_model.spec.classes, old_model.spec.mean, old_model.spec.std, images)
    new = predicted_names(new_model.net, new_model.spec.classes, new_model.spec.mean, new_model.spec.std, images)
    expected = evaluate_by_name(true=true, old=old, new=new, old_classes=OLD_DATA_CLASSES, classes=UPDATE_DATA_CLASSES)
    assert expected.scopes["old_classes"]["negative_flips"] > 0, "the case must have flips to check"

    assert_summary_matches(report["figures"], expected)
    ledger = {
        row["sample_index"]: (row["kind"], row["label_name"], row["old_prediction_name"], row["new_prediction_name"])
        for row in all_flips(api, v2["id"])
    }
    assert ledger == expected.flips
    # Filtering the ledger by a class name finds that class's samples, wherever its index.
    owls = api.ok(api.http.get(f"/models/{v2['id']}/flips", params={"label": "owl", "page_size": 100}))
    assert sorted(row["sample_index"] for row in owls["samples"]["items"]) == sorted(
        index for index, (_, name, _, _) in expected.flips.items() if name == "owl"
    )
