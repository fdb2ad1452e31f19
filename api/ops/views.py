"""/health and /metrics: what operators and Prometheus poll.

/health stays open (load balancers and container health checks carry no token; it tells whether
the database, the broker and the workers can do their work, names of workers and queues
included, nothing else); /metrics needs the `read` scope.
"""

from __future__ import annotations

from typing import Any, cast

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from api.deps import READ, QueueDep, SessionDep, SettingsDep
from api.errors import error_responses
from contracts.tasks import LIGHT_QUEUE, TRAINING_QUEUE
from db.base import utcnow
from db.datasets.models import Dataset
from db.migrate import head_revision
from db.settings import Settings
from db.updates.models import UpdateJob
from db.updates.submission import count_jobs_by_status
from db.workers.models import WorkerHeartbeat
from db.workers.service import is_live, list_workers

router = APIRouter(tags=["operations"])


HEALTHY_EXAMPLE: dict[str, Any] = {
    "status": "ok",
    "database": "ok",
    "schema": head_revision(),  # the example shows what a migrated database reports
    "broker": "ok",
    "training_queue": "ok",
    "queues": {LIGHT_QUEUE: 1, TRAINING_QUEUE: 1},
    "workers": [
        {"name": "gpu0@host-a", "queues": [TRAINING_QUEUE], "seconds_since_heartbeat": 3.2, "live": True},
        {"name": "light@host-a", "queues": [LIGHT_QUEUE], "seconds_since_heartbeat": 7.9, "live": True},
    ],
}


@router.get(
    "/health",
    responses={
        200: {"content": {"application/json": {"example": HEALTHY_EXAMPLE}}},
        503: {
            "content": {
                "application/json": {
                    "example": HEALTHY_EXAMPLE
                    | {
                        "status": "degraded",
                        "training_queue": "error: no live worker serves the training queue",
                        "queues": {LIGHT_QUEUE: 1, TRAINING_QUEUE: 0},
                        "workers": HEALTHY_EXAMPLE["workers"][1:],
                    }
                }
            }
        },
    },
)
def health(request: Request, session: SessionDep, queue: QueueDep, settings: SettingsDep) -> JSONResponse:
    """Whether the service can do its work (503 if not): the database answers real reads (its
    schema revision is the code's, its tables can be counted), the broker answers, and a live
    worker serves the training queue. Lists each worker with its queues and the seconds since
    its last heartbeat (live: younger than FLIPGUARD_WORKER_STALE_AFTER_S)."""
    checks: dict = {"database": "unknown", "schema": None}
    expected = request.app.state.schema_head
    try:
        revision = session.execute(text("SELECT version_num FROM alembic_version")).scalar_one_or_none()
        checks["schema"] = revision
        if revision != expected:
            raise RuntimeError(f"schema at revision {revision}, the API expects {expected}: run the migrations")
        for table in (Dataset, UpdateJob, WorkerHeartbeat):  # read every page of these tables
            session.execute(select(func.count()).select_from(table)).scalar_one()
        checks["database"] = "ok"
    except Exception as error:  # any failure means unhealthy; report it, do not raise
        session.rollback()
        checks["database"] = f"error: {error}".splitlines()[0]
    try:
        queue.ping()
        checks["broker"] = "ok"
    except Exception as error:
        checks["broker"] = f"error: {error}"
    checks.update(_workers(session, settings, database_ok=checks["database"] == "ok"))
    healthy = all(checks[key] == "ok" for key in ("database", "broker", "training_queue"))
    body = {"status": "ok" if healthy else "degraded", **checks}
    return JSONResponse(body, status_code=200 if healthy else 503)


def _workers(session: Session, settings: Settings, *, database_ok: bool) -> dict:
    """The workers' heartbeats, live workers per queue, and whether one serves training."""
    if not database_ok:
        return {"training_queue": "error: unknown (the database is unavailable)", "queues": {}, "workers": []}
    now = utcnow()
    workers = [
        {
            "name": row.name,
            "queues": list(row.queues),
            "seconds_since_heartbeat": round((now - row.beat_at).total_seconds(), 1),
            "live": is_live(row, stale_after_s=settings.worker_stale_after_s, now=now),
        }
        for row in list_workers(session)
    ]
    queues = {
        name: sum(1 for worker in workers if worker["live"] and name in cast(list[str], worker["queues"]))
        for name in (LIGHT_QUEUE, TRAINING_QUEUE)
    }
    training = "ok" if queues[TRAINING_QUEUE] else "error: no live worker serves the training queue"
    return {"training_queue": training, "queues": queues, "workers": workers}


@router.get(
    "/metrics",
    dependencies=[READ],
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}, **error_responses(401, 403)},
)
def metrics(request: Request, session: SessionDep) -> Response:
    """Prometheus metrics: requests and latency per route, update jobs per status."""
    app_metrics = request.app.state.metrics
    for status, count in count_jobs_by_status(session).items():
        app_metrics.jobs.labels(status=status).set(count)
    return Response(generate_latest(app_metrics.registry), media_type=CONTENT_TYPE_LATEST)
