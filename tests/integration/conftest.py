"""Integration fixtures: real PostgreSQL, Redis, API server and Celery worker processes."""

from __future__ import annotations

import os
import random
import uuid
from pathlib import Path

import httpx
import psycopg
import pytest
import redis

from scripts.stack import Stack, embedded_env, running_stack

FASHION_MNIST = "/usr/share/datasets/fashion-mnist"
PG_ADMIN_URL = os.environ.get("FLIPGUARD_TEST_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres")
# A database index of its own per test session, so two runs on one machine never share queues.
REDIS_URL = os.environ.get("FLIPGUARD_TEST_REDIS_URL", f"redis://127.0.0.1:6379/{random.randint(1, 15)}")
# A few hundred images and one epoch: enough for real flips, small enough for a 2-core CI.
SMALL_RECIPE = {"epochs": 1, "batch_size": 64, "train_samples_per_class": 60, "eval_samples_per_class": 40, "lr": 0.05}


@pytest.fixture(scope="session")
def artifacts_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("artifacts-out")


def _fresh_pg_database() -> str:
    name = f"flipguard_it_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    return name


def _drop_pg_database(name: str) -> None:
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def server_env(home: Path, *, database: str) -> dict[str, str]:
    """Production-shaped settings: PostgreSQL and Redis over real connections."""
    redis.Redis.from_url(REDIS_URL).flushdb()
    env = embedded_env(home)
    env.update(
        FLIPGUARD_DATABASE_URL=f"postgresql+psycopg://postgres@127.0.0.1:5432/{database}",
        FLIPGUARD_BROKER_URL=REDIS_URL,
        FLIPGUARD_HEARTBEAT_TIMEOUT_S="20",
        FLIPGUARD_DEVICE="cpu",
    )
    return env


@pytest.fixture(scope="module")
def pg_stack(tmp_path_factory):
    """API + one worker on PostgreSQL and Redis."""
    home = tmp_path_factory.mktemp("pg-stack")
    database = _fresh_pg_database()
    try:
        with running_stack(server_env(home, database=database), log_dir=home / "logs") as stack:
            yield stack
    finally:
        _drop_pg_database(database)


@pytest.fixture(scope="module")
def embedded_stack(tmp_path_factory):
    """API + one worker on the embedded default: SQLite, filesystem broker, local artifacts."""
    home = tmp_path_factory.mktemp("embedded")
    env = embedded_env(home) | {"FLIPGUARD_DEVICE": "cpu"}
    with running_stack(env, log_dir=home / "logs") as stack:
        yield stack


class Api:
    """A thin HTTP client with the waits the tests need."""

    def __init__(self, stack: Stack):
        self.stack = stack
        self.http = httpx.Client(base_url=stack.url, timeout=30, headers=stack.headers)

    def ok(self, response: httpx.Response, *expected: int) -> dict:
        assert response.status_code in (expected or (200,)), f"{response.status_code}: {response.text}"
        return response.json()

    def register_dataset(self, *, name: str, uri: str = FASHION_MNIST, data_format: str = "fashion-mnist") -> dict:
        dataset = self.ok(self.http.post("/datasets", json={"name": name, "uri": uri, "format": data_format}), 201, 202)
        return Stack.wait_until(
            lambda: self._dataset_settled(dataset["id"]), timeout_s=120, what=f"data set {name} to be inspected"
        )

    def _dataset_settled(self, dataset_id: int) -> dict | None:
        dataset = self.ok(self.http.get(f"/datasets/{dataset_id}"))
        return dataset if dataset["status"] != "pending" else None

    def submit(self, body: dict, **headers) -> dict:
        return self.ok(self.http.post("/updates", json=body, headers=headers), 202, 200)

    def wait_job(self, job_id: int, *, statuses=("succeeded", "failed", "cancelled"), timeout_s: float = 600) -> dict:
        def settled():
            job = self.ok(self.http.get(f"/updates/{job_id}"))
            return job if job["status"] in statuses else None

        return Stack.wait_until(settled, timeout_s=timeout_s, what=f"job {job_id} to reach {statuses}")

    def first_version(self, *, dataset_id: int, family: str, classes: list[str], recipe=SMALL_RECIPE) -> dict:
        job = self.submit(
            {
                "family": family,
                "architecture": "small_cnn",
                "dataset_id": dataset_id,
                "classes": classes,
                "method": "independent",
                "recipe": recipe,
                "seed": 0,
            }
        )
        job = self.wait_job(job["id"])
        assert job["status"] == "succeeded", job
        return self.ok(self.http.get(f"/models/{job['result_model_id']}"))
