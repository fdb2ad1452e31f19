"""/health tells the truth: a real read of the schema (its revision and its tables), worker
liveness from their heartbeats, and 503 while no live worker serves the training queue."""

from __future__ import annotations

import sqlite3
from datetime import timedelta
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import update

from api.main import create_app
from db.base import utcnow
from db.migrate import downgrade, head_revision
from db.workers.models import WorkerHeartbeat
from db.workers.service import record_heartbeat, remove_worker


def test_no_live_training_worker_is_a_503(anonymous, session):
    response = anonymous.get("/health")
    assert response.status_code == 503
    body = response.json()
    assert (body["status"], body["database"], body["broker"]) == ("degraded", "ok", "ok")
    assert body["schema"] == head_revision()
    assert body["training_queue"] == "error: no live worker serves the training queue"
    assert body["workers"] == [] and body["queues"] == {"light": 0, "training": 0}

    record_heartbeat(session, name="light@host", queues=["light"])
    assert anonymous.get("/health").status_code == 503  # a light worker does not train

    record_heartbeat(session, name="gpu0@host", queues=["training"])
    response = anonymous.get("/health")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "ok" and body["queues"] == {"light": 1, "training": 1}
    assert {(w["name"], tuple(w["queues"]), w["live"]) for w in body["workers"]} == {
        ("gpu0@host", ("training",), True),
        ("light@host", ("light",), True),
    }
    assert all(0 <= w["seconds_since_heartbeat"] < 30 for w in body["workers"])


def test_a_silent_worker_is_stale_and_a_stopped_one_gone(anonymous, session, settings):
    record_heartbeat(session, name="gpu0@host", queues=["training"])
    silent_since = utcnow() - timedelta(seconds=settings.worker_stale_after_s + 5)
    session.execute(update(WorkerHeartbeat).values(beat_at=silent_since))
    session.commit()
    response = anonymous.get("/health")
    assert response.status_code == 503
    (worker,) = response.json()["workers"]
    assert worker["live"] is False and worker["seconds_since_heartbeat"] >= settings.worker_stale_after_s
    remove_worker(session, name="gpu0@host")
    assert anonymous.get("/health").json()["workers"] == []


def corrupt_sqlite_pages(path: Path) -> None:
    """Overwrite every page but the first (the header and schema) with garbage."""
    page_size = sqlite3.connect(path).execute("PRAGMA page_size").fetchone()[0]
    raw = bytearray(path.read_bytes())
    assert len(raw) > 2 * page_size
    raw[page_size:] = b"\xa5" * (len(raw) - page_size)
    path.write_bytes(bytes(raw))


def test_a_corrupt_database_file_is_unhealthy(settings, session):
    record_heartbeat(session, name="gpu0@host", queues=["training"])
    session.get_bind().dispose()
    path = Path(settings.database_url.removeprefix("sqlite:///"))
    corrupt_sqlite_pages(path)
    # The old check's query still succeeds on this file; reading a table does not.
    assert sqlite3.connect(path).execute("SELECT 1").fetchone() == (1,)
    with TestClient(create_app(settings)) as client:
        response = client.get("/health")
    assert response.status_code == 503, response.text
    body = response.json()
    assert body["status"] == "degraded" and body["database"].startswith("error:"), body
    assert "malformed" in body["database"] or "not a database" in body["database"]
    assert body["training_queue"].startswith("error: unknown")


def test_a_database_behind_the_code_schema_is_unhealthy(settings, session):
    record_heartbeat(session, name="gpu0@host", queues=["training"])
    session.get_bind().dispose()
    downgrade(settings.database_url, "0002")
    with TestClient(create_app(settings)) as client:
        body = client.get("/health").json()
    assert body["database"] == f"error: schema at revision 0002, the API expects {head_revision()}: run the migrations"
