"""Worker heartbeats (written by workers) and the live workers (read by /health)."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from db.base import rows_changed, utcnow
from db.workers.models import WorkerHeartbeat


def record_heartbeat(session: Session, *, name: str, queues: list[str], started_at: datetime | None = None) -> None:
    """Refresh the worker's row (created on its first beat)."""
    now = utcnow()
    values = {"queues": sorted(queues), "beat_at": now, "started_at": started_at or now}
    if rows_changed(session, update(WorkerHeartbeat).where(WorkerHeartbeat.name == name).values(**values)) == 0:
        session.add(WorkerHeartbeat(name=name, **values))
    try:
        session.commit()
    except IntegrityError:  # two beats of one worker raced to create the row: the other won
        session.rollback()


def remove_worker(session: Session, *, name: str) -> None:
    """Forget a worker that shuts down cleanly."""
    session.execute(delete(WorkerHeartbeat).where(WorkerHeartbeat.name == name))
    session.commit()


def list_workers(session: Session) -> list[WorkerHeartbeat]:
    """Every worker that has beaten and not shut down cleanly, most recently heard first."""
    return list(session.scalars(select(WorkerHeartbeat).order_by(WorkerHeartbeat.beat_at.desc())))


def is_live(worker: WorkerHeartbeat, *, stale_after_s: float, now: datetime | None = None) -> bool:
    return worker.beat_at >= (now or utcnow()) - timedelta(seconds=stale_after_s)
