from concurrent.futures import ThreadPoolExecutor

import pytest
from api_helpers import assert_error, broker_messages, model_file, ready_dataset, upload
from fastapi.testclient import TestClient

from contracts.tasks import RUN_UPDATE_TASK, TRAINING_QUEUE
from db.datasets.models import DatasetFormat
from db.datasets.service import create_dataset
from db.updates.lifecycle import claim_job


@pytest.fixture
def base(client, tmp_path):
    return upload(client, model_file(tmp_path / "v1.safetensors")).json()


@pytest.fixture
def dataset(session):
    return ready_dataset(session)


def test_submit_queues_job_and_enqueues_training(client, settings, base, dataset):
    response = client.post(
        "/updates",
        json={
            "base_model_id": base["id"],
            "dataset_id": dataset.id,
            "recipe": {"epochs": 5},
            "method_params": {"bias": 2},
        },
    )
    assert response.status_code == 202, response.text
    job = response.json()
    assert (job["status"], job["method"], job["family"], job["architecture"]) == (
        "queued",
        "mpt-kl",
        "shoes",
        "small_cnn",
    )
    assert job["recipe"] == {"epochs": 5} and job["method_params"] == {"bias": 2.0}
    assert job["gate"] == {
        "max_nfr": None,
        "min_accuracy": None,
        "max_accuracy_drop": None,
        "max_nfr_ratio": None,
        "auto_promote": False,
    }
    assert (job["sweep"], job["selection"], job["choice"]) == (None, None, None)  # b given: one model
    message = broker_messages(settings)[-1]
    assert message["headers"]["task"] == RUN_UPDATE_TASK
    assert message["properties"]["delivery_info"]["routing_key"] == TRAINING_QUEUE
    detail = client.get(f"/updates/{job['id']}").json()
    assert detail["events"] == [] and detail["epochs"] == 5
    assert client.get("/updates", params={"status": "queued"}).json()["total"] == 1


@pytest.mark.parametrize(
    "changes, status, loc",
    [
        ({"method": "magic"}, 422, ["body", "method"]),
        ({"classes": ["sandal", "sneaker", "boot", "unicorn"]}, 422, ["body", "classes"]),
        ({"classes": ["slipper"]}, 422, ["body", "classes"]),
        ({"recipe": {"epochs": 0}}, 422, ["body", "recipe", "epochs"]),
        ({"recipe": {"epochz": 3}}, 422, ["body", "recipe", "epochz"]),
        ({"method_params": {"tau": -1}}, 422, ["body", "method_params", "tau"]),
        ({"gate": {"max_nfr": 2}}, 422, ["body", "gate", "max_nfr"]),
        ({"dataset_id": 999}, 422, ["body", "dataset_id"]),
        ({"base_model_id": 999}, 422, ["body", "base_model_id"]),
        ({"base_model_id": None}, 422, ["body", "family"]),
        ({"base_model_id": None, "family": "x", "architecture": "small_cnn"}, 422, ["body", "method"]),
    ],
)
def test_invalid_submissions_name_the_field(client, base, dataset, changes, status, loc):
    body = {"base_model_id": base["id"], "dataset_id": dataset.id, **changes}
    assert_error(client.post("/updates", json=body), status, loc)


def test_dataset_must_be_ready_and_hold_base_classes(client, session, base):
    pending = create_dataset(session, name="raw", uri="/d", format=DatasetFormat.NPZ)
    assert_error(
        client.post("/updates", json={"base_model_id": base["id"], "dataset_id": pending.id}),
        409,
        ["body", "dataset_id"],
        "pending",
    )
    lacking = ready_dataset(session, name="other", classes=("sandal", "cat"))
    assert_error(
        client.post("/updates", json={"base_model_id": base["id"], "dataset_id": lacking.id}),
        422,
        ["body", "dataset_id"],
        "sneaker",
    )


def test_first_version_from_scratch(client, dataset):
    response = client.post(
        "/updates",
        json={"family": "new", "architecture": "resnet18", "dataset_id": dataset.id, "method": "independent"},
    )
    assert response.status_code == 202, response.text
    assert response.json()["base_model_id"] is None


def test_idempotency_key(client, base, dataset):
    body = {"base_model_id": base["id"], "dataset_id": dataset.id}
    first = client.post("/updates", json=body, headers={"Idempotency-Key": "abc"})
    again = client.post("/updates", json=body, headers={"Idempotency-Key": "abc"})
    assert (first.status_code, again.status_code) == (202, 200)
    assert first.json()["id"] == again.json()["id"]
    assert_error(
        client.post("/updates", json={**body, "seed": 7}, headers={"Idempotency-Key": "abc"}),
        409,
        ["header", "Idempotency-Key"],
    )
    assert client.get("/updates").json()["total"] == 1


def test_concurrent_posts_with_one_key_create_one_job(client, base, dataset):
    body = {"base_model_id": base["id"], "dataset_id": dataset.id}

    def post(_):
        with TestClient(client.app, headers=client.headers) as own:
            return own.post("/updates", json=body, headers={"Idempotency-Key": "race"})

    with ThreadPoolExecutor(6) as pool:
        responses = list(pool.map(post, range(6)))
    # Exactly one request created the job (202); every other one was answered with it (200).
    statuses = sorted(response.status_code for response in responses)
    assert statuses == [200] * 5 + [202], [response.text for response in responses]
    assert len({response.json()["id"] for response in responses}) == 1
    assert client.get("/updates").json()["total"] == 1


def test_cancel(client, session, base, dataset):
    body = {"base_model_id": base["id"], "dataset_id": dataset.id}
    queued = client.post("/updates", json=body).json()
    assert client.post(f"/updates/{queued['id']}/cancel").json()["status"] == "cancelled"
    assert_error(client.post(f"/updates/{queued['id']}/cancel"), 409, ["path", "job_id"])
    running = client.post("/updates", json=body).json()
    claim_job(session, job_id=running["id"], worker_id="w1", heartbeat_timeout_s=60)
    flagged = client.post(f"/updates/{running['id']}/cancel").json()
    assert (flagged["status"], flagged["cancel_requested"]) == ("running", True)
    assert_error(client.post("/updates/999/cancel"), 404, ["path", "job_id"])


def test_recipe_and_method_schemas_mirror_the_engine_dataclasses():
    import dataclasses

    from api.updates.recipe_schemas import MethodParamsIn, RecipeIn
    from mpt.recipe import MethodParams, Recipe

    assert set(RecipeIn.model_fields) == {field.name for field in dataclasses.fields(Recipe)}
    assert set(MethodParamsIn.model_fields) == {f.name for f in dataclasses.fields(MethodParams)}


def test_unreachable_broker_is_a_503(settings, base, dataset, make_token):
    from api.main import create_app

    down = settings.model_copy(update={"broker_url": "redis://127.0.0.1:1/0"})
    client_headers = {"Authorization": f"Bearer {make_token('read', 'submit')}"}
    with TestClient(create_app(down), headers=client_headers) as client:
        response = client.post(
            "/updates",
            json={"base_model_id": base["id"], "dataset_id": dataset.id},
            headers={"Idempotency-Key": "retry-me"},
        )
        assert response.status_code == 503, response.text
        assert client.get("/health").status_code == 503
