"""Submissions are refused at the door, naming the field, instead of failing later in a worker:
ids and numbers are strict (true is not 1, in /updates and /comparisons), the architecture must
be one the engine builds, normalisation must be positive and fit the data; Idempotency-Keys belong to their token."""

from __future__ import annotations

import pytest
from api_helpers import assert_error, broker_messages, model_file, ready_dataset, upload
from fastapi.testclient import TestClient


@pytest.fixture
def base(client, tmp_path):
    return upload(client, model_file(tmp_path / "v1.safetensors")).json()


@pytest.fixture
def dataset(session):
    return ready_dataset(session)  # one-channel 28x28 images


def queued(settings) -> int:
    return sum(1 for message in broker_messages(settings) if message["headers"]["task"] == "flipguard.run_update")


@pytest.mark.parametrize(
    "changes, loc",
    [
        ({"base_model_id": True}, ["body", "base_model_id"]),
        ({"base_model_id": 1.0}, ["body", "base_model_id"]),
        ({"base_model_id": "1"}, ["body", "base_model_id"]),
        ({"dataset_id": True}, ["body", "dataset_id"]),
        ({"seed": False}, ["body", "seed"]),
        ({"recipe": {"epochs": True}}, ["body", "recipe", "epochs"]),
        ({"recipe": {"lr": "0.1"}}, ["body", "recipe", "lr"]),
        ({"recipe": {"horizontal_flip": 1}}, ["body", "recipe", "horizontal_flip"]),
        ({"method_params": {"elodi_topk": 2.0}}, ["body", "method_params", "elodi_topk"]),
        ({"gate": {"auto_promote": "yes"}}, ["body", "gate", "auto_promote"]),
        ({"gate": {"max_nfr": True}}, ["body", "gate", "max_nfr"]),
    ],
)
def test_ids_numbers_and_flags_are_strict(client, settings, base, dataset, changes, loc):
    body = {"base_model_id": base["id"], "dataset_id": dataset.id} | changes
    assert_error(client.post("/updates", json=body), 422, loc)
    assert client.get("/updates").json()["total"] == 0 and queued(settings) == 0


def test_whole_floats_still_count_as_floats(client, base, dataset):
    body = {"base_model_id": base["id"], "dataset_id": dataset.id, "recipe": {"lr": 1}, "gate": {"max_nfr": 0}}
    assert client.post("/updates", json=body).status_code == 202


def test_promotion_flags_are_strict(client, base):
    assert_error(client.post(f"/models/{base['id']}/promote", json={"force": 1, "reason": "x"}), 422, ["body", "force"])


@pytest.mark.parametrize(
    "body, loc",
    [
        ({"model_id": True, "baseline_model_id": "1"}, ["body", "model_id"]),
        ({"model_id": "1", "baseline_model_id": 2}, ["body", "model_id"]),
        ({"model_id": 1.0, "baseline_model_id": 2}, ["body", "model_id"]),
        ({"model_id": 2, "baseline_model_id": "1"}, ["body", "baseline_model_id"]),
    ],
)
def test_comparison_ids_are_strict(client, base, body, loc):
    # A lax id would read as model 1 (`base`) and answer 404 for the missing other one.
    assert_error(client.post("/comparisons", json=body), 422, loc)


def test_an_unknown_architecture_is_refused_at_submit(client, settings, dataset):
    body = {"family": "new", "architecture": "alexnet", "dataset_id": dataset.id, "method": "independent"}
    response = client.post("/updates", json=body)
    assert_error(response, 422, ["body", "architecture"], "unknown architecture 'alexnet'")
    assert "small_cnn, resnet18, resnet34, resnet50" in response.json()["detail"][0]["msg"]
    assert queued(settings) == 0
    assert client.post("/updates", json=body | {"architecture": "small_cnn"}).status_code == 202


@pytest.mark.parametrize(
    "recipe, loc, message",
    [
        ({"mean": [0.5], "std": [0]}, ["body", "recipe", "std", 0], "greater than 0"),
        ({"mean": [0.5], "std": [-1.0]}, ["body", "recipe", "std", 0], "greater than 0"),
        ({"mean": [1.5], "std": [0.2]}, ["body", "recipe", "mean", 0], "less than or equal to 1"),
        ({"std": [0.2]}, ["body", "recipe", "std"], "give mean and std together"),
        ({"mean": [0.5]}, ["body", "recipe", "std"], "give mean and std together"),
        ({"mean": [0.5, 0.5], "std": [0.2, 0.2]}, ["body", "recipe", "std"], "one value per image channel"),
        ({"mean": [0.5, 0.5, 0.5], "std": [0.2]}, ["body", "recipe", "std"], "one value per image channel"),
        ({"mean": [0.5, 0.5, 0.5], "std": [0.2, 0.2, 0.2]}, ["body", "recipe", "mean"], "1-channel images"),
    ],
)
def test_normalisation_is_refused_at_submit(client, settings, base, dataset, recipe, loc, message):
    body = {"base_model_id": base["id"], "dataset_id": dataset.id, "recipe": recipe}
    assert_error(client.post("/updates", json=body), 422, loc, message)
    assert client.get("/updates").json()["total"] == 0 and queued(settings) == 0


def test_an_update_keeps_its_base_models_image_size(client, settings, base, dataset, tmp_path):
    # The worker would refuse it (mpt/update.py): the size is read from the base's model file.
    body = {"base_model_id": base["id"], "dataset_id": dataset.id, "recipe": {"image_size": 64}}
    response = client.post("/updates", json=body)
    assert_error(response, 422, ["body", "recipe", "image_size"], "an update keeps its base model's image size, 28 px")
    assert client.get("/updates").json()["total"] == 0 and queued(settings) == 0
    wide = upload(client, model_file(tmp_path / "wide.safetensors", metadata={"flipguard.image_size": "[28, 32]"}),
                  family="wide").json()  # fmt: skip
    body = {"base_model_id": wide["id"], "dataset_id": dataset.id, "recipe": {"image_size": 28}}
    assert_error(client.post("/updates", json=body), 422, ["body", "recipe", "image_size"], "image size, 28x32 px")
    same = {"base_model_id": base["id"], "dataset_id": dataset.id, "recipe": {"image_size": 28}}
    assert client.post("/updates", json=same).status_code == 202


def test_idempotency_keys_are_scoped_to_their_token(app, client, make_token, base, dataset):
    body = {"base_model_id": base["id"], "dataset_id": dataset.id}
    key = {"Idempotency-Key": "nightly-2026-11-27"}
    first = client.post("/updates", json=body, headers=key)
    assert first.status_code == 202
    with TestClient(app, headers={"Authorization": f"Bearer {make_token('read', 'submit', name='other')}"}) as other:
        # Another token's request with the same key is its own: neither a replay of the first
        # token's job (which it would reveal) nor a conflict with it.
        mine = other.post("/updates", json=body, headers=key)
        assert mine.status_code == 202 and mine.json()["id"] != first.json()["id"]
        assert other.post("/updates", json=body, headers=key).json()["id"] == mine.json()["id"]
    replay = client.post("/updates", json=body, headers=key)
    assert replay.status_code == 200 and replay.json()["id"] == first.json()["id"]
    assert_error(client.post("/updates", json=body | {"seed": 1}, headers=key), 409, ["header", "Idempotency-Key"])
