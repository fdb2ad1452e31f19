"""/health and /metrics: what operators and Prometheus poll.

/health stays open (load balancers and container health checks carry no token, and it tells
only whether the database and broker answer); /metrics needs the `read` scope.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from api.deps import READ, QueueDep, SessionDep
from api.errors import error_responses
from db.updates.submission import count_jobs_by_status

router = APIRouter(tags=["operations"])


@router.get(
    "/health",
    responses={
        200: {"content": {"application/json": {"example": {"status": "ok", "database": "ok", "broker": "ok"}}}},
        503: {
            "content": {
                "application/json": {
                    "example": {"status": "degraded", "database": "ok", "broker": "error: connection refused"}
                }
            }
        },
    },
)
def health(session: SessionDep, queue: QueueDep):
    """Whether the database and the broker are reachable (503 if either is not)."""
    checks = {}
    try:
        session.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as error:  # any failure means unhealthy; report it, do not raise
        checks["database"] = f"error: {error}"
    try:
        queue.ping()
        checks["broker"] = "ok"
    except Exception as error:
        checks["broker"] = f"error: {error}"
    healthy = all(value == "ok" for value in checks.values())
    return JSONResponse({"status": "ok" if healthy else "degraded", **checks}, status_code=200 if healthy else 503)


@router.get(
    "/metrics",
    dependencies=[READ],
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}, **error_responses(401, 403)},
)
def metrics(request: Request, session: SessionDep):
    """Prometheus metrics: requests and latency per route, update jobs per status."""
    app_metrics = request.app.state.metrics
    for status, count in count_jobs_by_status(session).items():
        app_metrics.jobs.labels(status=status).set(count)
    return Response(generate_latest(app_metrics.registry), media_type=CONTENT_TYPE_LATEST)
