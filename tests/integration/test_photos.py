"""Photos of any size and mode through the service: register an image folder, train v1 and an
MPT update at a chosen image size, on the resident and on the streaming data path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from mpt.formats import open_dataset
from mpt.recipe import Recipe
from mpt.update import evaluate, prepare_data
from tests.integration.conftest import Api
from tests.integration.photos import FOLDERS as ALL_FOLDERS
from tests.integration.photos import data_root, photo_folder
from tests.integration.test_update_flow import _download_model

FOLDERS = ALL_FOLDERS[:6]
OLD = FOLDERS[:3]
IMAGE_SIZE = 32
RECIPE = {"epochs": 1, "batch_size": 64, "lr": 0.05, "image_size": IMAGE_SIZE}


def _story(api: Api, root: Path, tmp_path: Path, *, family: str, data_path: str | None) -> None:
    recipe = RECIPE | ({"data_path": data_path} if data_path else {})
    dataset = api.register_dataset(name=f"photos-{family}", uri=str(root), data_format="imagefolder")
    assert dataset["status"] == "ready", dataset
    assert dataset["train_size"] == 300 and dataset["test_size"] == 120 and dataset["classes"] == sorted(FOLDERS)
    assert dataset["image_shape"] is None  # sizes differ
    summary = dataset["image_summary"]
    assert summary["channels"] == 3 and set(summary["modes"]) == {"L", "RGB", "P", "RGBA"}

    v1 = api.first_version(dataset_id=dataset["id"], family=family, classes=OLD, recipe=recipe)
    job = api.wait_job(
        api.submit(
            {"base_model_id": v1["id"], "dataset_id": dataset["id"], "method": "mpt-kl", "recipe": recipe, "seed": 0}
        )["id"]
    )
    assert job["status"] == "succeeded", job
    assert job["data_path"] == (data_path or "resident")
    v2 = api.ok(api.http.get(f"/models/{job['result_model_id']}"))

    new_model = _download_model(api, v2["id"], tmp_path)
    old_model = _download_model(api, v1["id"], tmp_path)
    for model in (new_model, old_model):
        assert model.spec.image_size == (IMAGE_SIZE, IMAGE_SIZE) and model.spec.in_channels == 3
    # The report against a direct evaluation of the downloaded weights.
    data = prepare_data(open_dataset(root), old_classes=OLD, classes=None, recipe=Recipe.from_dict(recipe), seed=0)
    summary, ledger = evaluate(
        model=new_model, baseline=old_model, evaluation=data.evaluation, k_old=3, device=torch.device("cpu")
    )
    expected = summary.to_dict()  # the JSON form, whose scopes the API returns as they are
    figures = api.ok(api.http.get(f"/models/{v2['id']}/flips"))["figures"]
    for scope in ("all", "old_classes"):
        for key in ("samples", "negative_flips", "positive_flips", "old_correct", "new_correct"):
            assert figures["scopes"][scope][key] == expected["scopes"][scope][key], (scope, key)
    flips = api.ok(api.http.get(f"/models/{v2['id']}/flips", params={"page_size": 500}))
    assert flips["samples"]["total"] == len(ledger)
    if len(ledger):
        sample = flips["samples"]["items"][0]["sample_index"]
        image = api.http.get(f"/models/{v2['id']}/flips/{sample}/image")
        assert image.status_code == 200 and image.headers["content-type"] == "image/png"
    # The report keeps thumbnails of the model's inputs, never the original files.
    report_files = list((Path(api.stack.env["FLIPGUARD_ARTIFACT_ROOT"]) / "reports").glob(f"job-{job['id']}-*.npz"))
    with np.load(report_files[0]) as archive:
        assert archive["images"].shape == (len(ledger), 3, IMAGE_SIZE, IMAGE_SIZE)


@pytest.fixture(scope="module")
def photos(embedded_stack) -> Path:
    return photo_folder(data_root(embedded_stack) / "photos", classes=6, train_per_class=50, test_per_class=20)


def test_photos_of_any_size_on_the_resident_path(embedded_stack, photos, tmp_path):
    _story(Api(embedded_stack), photos, tmp_path, family="photos-resident", data_path=None)


def test_photos_of_any_size_on_the_streaming_path(embedded_stack, photos, tmp_path):
    _story(Api(embedded_stack), photos, tmp_path, family="photos-streaming", data_path="streaming")
