"""The API server alone (no worker) on PostgreSQL and Redis: concurrent idempotent submissions,
and no token in its logs."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from threading import Barrier

import httpx
import pytest
from sqlalchemy import func, select

from db.base import make_engine, make_session_factory
from db.datasets.models import DatasetFormat
from db.datasets.service import create_dataset, mark_dataset_ready
from db.updates.models import UpdateJob
from scripts.stack import Stack
from tests.integration.conftest import _drop_pg_database, _fresh_pg_database, server_env

CLIENTS = 50


@pytest.fixture(scope="module")
def api_only(tmp_path_factory):
    """Migrated PostgreSQL, the API with its access log on, a data set marked ready."""
    home = tmp_path_factory.mktemp("api-only")
    database = _fresh_pg_database()
    stack = Stack(server_env(home, database=database), log_dir=home / "logs")
    engine = None
    try:
        stack.migrate()
        stack.start_api(log_level="info")
        engine = make_engine(stack.env["FLIPGUARD_DATABASE_URL"])
        with make_session_factory(engine)() as session:
            dataset = create_dataset(session, name="shoes", uri="/data/shoes", format=DatasetFormat.NPZ)
            mark_dataset_ready(
                session,
                dataset_id=dataset.id,
                classes=["sandal", "boot"],
                train_size=10,
                test_size=10,
                image_shape=[1, 28, 28],
                digest="d",
            )
        yield stack, engine, dataset.id
    finally:
        stack.stop()
        if engine is not None:
            engine.dispose()
        _drop_pg_database(database)


def test_fifty_concurrent_posts_with_one_key_create_one_job(api_only):
    stack, engine, dataset_id = api_only
    body = {
        "family": "shoes",
        "architecture": "small_cnn",
        "dataset_id": dataset_id,
        "method": "independent",
        "recipe": {"epochs": 1},
    }
    headers = {**stack.headers, "Idempotency-Key": "fifty-at-once"}
    start = Barrier(CLIENTS)

    def post(_):
        with httpx.Client(base_url=stack.url, timeout=60) as client:
            start.wait()  # every client sends at the same moment
            return client.post("/updates", json=body, headers=headers)

    with ThreadPoolExecutor(CLIENTS) as pool:
        responses = list(pool.map(post, range(CLIENTS)))
    statuses = sorted(response.status_code for response in responses)
    assert statuses == [200] * (CLIENTS - 1) + [202], [r.text for r in responses if r.status_code >= 300]
    assert len({response.json()["id"] for response in responses}) == 1
    with make_session_factory(engine)() as session:
        assert session.scalar(select(func.count()).select_from(UpdateJob)) == 1

    other = httpx.post(f"{stack.url}/updates", json={**body, "seed": 9}, headers=headers, timeout=30)
    assert other.status_code == 409, other.text
    assert other.json()["detail"][0]["loc"] == ["header", "Idempotency-Key"]


def test_tokens_never_reach_the_logs(api_only):
    stack, _, _ = api_only
    assert httpx.get(f"{stack.url}/updates", headers=stack.headers, timeout=30).status_code == 200
    assert (
        httpx.get(f"{stack.url}/updates", headers={"Authorization": "Bearer leaked-secret-x"}, timeout=30).status_code
        == 401
    )
    log = (stack.log_dir / "api.log").read_text()
    assert "GET /updates HTTP/1.1" in log  # the access log is on
    assert stack.token not in log and "leaked-secret-x" not in log
