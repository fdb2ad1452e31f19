"""Crashes and restarts with real processes: a worker killed with SIGKILL mid-epoch, Redis
losing its queues, PostgreSQL and the API restarting under running jobs."""

from __future__ import annotations

import signal

import pytest

from scripts.stack import Stack, embedded_env, running_stack
from tests.integration.conftest import SMALL_RECIPE, Api
from tests.integration.private_services import private_services

OLD = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat"]
# Long enough to be interrupted mid-run, short enough for CI.
LONGER_RECIPE = SMALL_RECIPE | {"epochs": 6, "train_samples_per_class": 150}


@pytest.fixture
def private_stack(tmp_path):
    """API + one worker on a private PostgreSQL and Redis that a test may restart."""
    with private_services() as (broker, database):
        env = embedded_env(tmp_path) | {
            "FLIPGUARD_DATABASE_URL": database.url,
            "FLIPGUARD_BROKER_URL": broker.url,
            "FLIPGUARD_DEVICE": "cpu",
            "FLIPGUARD_HEARTBEAT_TIMEOUT_S": "6",
            "FLIPGUARD_RECONCILE_INTERVAL_S": "2",
        }
        with running_stack(env, log_dir=tmp_path / "logs") as stack:
            yield stack, broker, database


def _base_model(api: Api, family: str) -> tuple[dict, dict]:
    dataset = api.register_dataset(name=f"fmnist-{family}")
    return dataset, api.first_version(dataset_id=dataset["id"], family=family, classes=OLD)


def _epochs_done(api: Api, job_id: int) -> int:
    events = api.ok(api.http.get(f"/updates/{job_id}"))["events"]
    return max((e["epoch"] for e in events if e["phase"] == "training"), default=0)


def _versions_of(api: Api, family: str) -> list[dict]:
    return api.ok(api.http.get("/models", params={"family": family}))["items"]


def test_worker_killed_mid_epoch_resumes_on_a_new_worker(private_stack):
    stack, _, _ = private_stack
    api = Api(stack)
    dataset, v1 = _base_model(api, "killed")
    job = api.submit(
        {
            "base_model_id": v1["id"],
            "dataset_id": dataset["id"],
            "method": "mpt-kl",
            "method_params": {"bias": 4.0},  # one student; test_sweep_flow kills a sweep
            "recipe": LONGER_RECIPE,
        }
    )
    Stack.wait_until(lambda: _epochs_done(api, job["id"]) >= 2, timeout_s=300, what="two epochs with checkpoints")
    stack.stop_process(stack.workers[0], sig=signal.SIGKILL)

    stack.start_worker("worker-after-crash")
    job = api.wait_job(job["id"])
    assert job["status"] == "succeeded", job
    assert job["attempts"] == 2
    epochs = [e["epoch"] for e in job["events"] if e["phase"] == "training"]
    # The new worker went on from the last checkpoint instead of starting over.
    assert epochs[-1] == LONGER_RECIPE["epochs"] and epochs.count(1) == 1, epochs
    versions = _versions_of(api, "killed")
    assert len(versions) == 2 and [v["job_id"] for v in versions].count(job["id"]) == 1


def test_redis_restart_loses_no_job(private_stack):
    stack, broker, _ = private_stack
    api = Api(stack)
    dataset, v1 = _base_model(api, "redis")
    running = api.submit(
        {
            "base_model_id": v1["id"],
            "dataset_id": dataset["id"],
            "method": "mpt-kl",
            "method_params": {"bias": 4.0},  # one student; test_sweep_flow kills a sweep
            "recipe": LONGER_RECIPE,
        }
    )
    api.wait_job(running["id"], statuses=("running",), timeout_s=120)
    queued = api.submit(
        {"base_model_id": v1["id"], "dataset_id": dataset["id"], "method": "independent", "recipe": SMALL_RECIPE}
    )
    broker.stop()  # the queued job's message is gone with it
    broker.start()
    for job in (running, queued):
        finished = api.wait_job(job["id"])
        assert finished["status"] == "succeeded", finished
    assert len(_versions_of(api, "redis")) == 3


def test_postgres_and_api_restarts_lose_no_result(private_stack):
    stack, _, database = private_stack
    api = Api(stack)
    dataset, v1 = _base_model(api, "restarts")
    job = api.submit(
        {
            "base_model_id": v1["id"],
            "dataset_id": dataset["id"],
            "method": "mpt-kl",
            "method_params": {"bias": 4.0},  # one student; test_sweep_flow kills a sweep
            "recipe": LONGER_RECIPE,
        }
    )
    Stack.wait_until(lambda: _epochs_done(api, job["id"]) >= 1, timeout_s=300, what="the first epoch")
    database.stop()
    stack.stop_process(stack.api)
    database.start()
    stack.start_api()
    job = api.wait_job(job["id"])
    assert job["status"] == "succeeded", job
    assert len(_versions_of(api, "restarts")) == 2
    assert (
        api.ok(api.http.get(f"/models/{job['result_model_id']}/flips"))["figures"]["scopes"]["old_classes"]["samples"]
        > 0
    )
