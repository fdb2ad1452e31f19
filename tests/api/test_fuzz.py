"""Property-based fuzz of the OpenAPI schema (schemathesis): generated valid and invalid requests
to every operation, with an admin token, on an app whose database holds a model, its update,
flip report, ledger and images, and a live training worker's heartbeat. No response may be a
5xx or disagree with the schema (status codes, media types, bodies)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
import schemathesis
from api_helpers import seed_update
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from api.main import create_app
from db.base import make_engine, make_session_factory
from db.migrate import upgrade
from db.settings import Settings
from db.tokens.service import create_token
from db.workers.service import record_heartbeat

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
# Per operation: the 14 operations take about a minute on two cores.
MAX_EXAMPLES = 80

# schemathesis parametrizes at import time, so the app (and its folder) exist from then on.
HOME = Path(tempfile.mkdtemp(prefix="flipguard-fuzz-"))
SETTINGS = Settings(
    database_url=f"sqlite:///{HOME / 'api.db'}",
    broker_url=f"filesystem://{HOME / 'broker'}",
    artifact_root=HOME / "artifacts",
    data_roots=[HOME / "data"],
    max_upload_bytes=1024 * 1024,  # a small_cnn file is about 370 KB
    # The seeded worker heartbeat (a live training worker) stays live for the whole run.
    worker_stale_after_s=24 * 3600,
)
APP = create_app(SETTINGS)
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)


@pytest.fixture(scope="module")
def admin_headers():
    """Migrate, seed the rows and return an admin token's header; remove the folder afterwards."""
    (HOME / "data").mkdir(exist_ok=True)
    upgrade(SETTINGS.database_url)
    engine = make_engine(SETTINGS.database_url)
    try:
        with make_session_factory(engine)() as session, TestClient(APP) as client:
            token = create_token(session, name="fuzz", scopes=["read", "submit", "admin"])[1]
            client.headers["Authorization"] = f"Bearer {token}"
            seed_update(client, session, SETTINGS, HOME)
            record_heartbeat(session, name="fuzz@host", queues=["light", "training"])
        yield {"Authorization": f"Bearer {token}"}
    finally:
        engine.dispose()
        APP.state.engine.dispose()
        shutil.rmtree(HOME, ignore_errors=True)


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_no_server_errors_and_responses_match_the_schema(case, admin_headers):
    case.call_and_validate(headers=admin_headers, checks=CHECKS)
