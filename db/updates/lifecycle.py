"""The worker's side of an update job: claim, heartbeat, events, failure and cancellation.

Every transition is a conditional UPDATE, so two deliveries of one task, or a worker and a
cancelling user, cannot both win. Completion, which registers the trained model, is
db.updates.completion.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Required, TypedDict, Unpack

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.orm import Session

from db.base import rows_changed, utcnow
from db.errors import JobNotOwned
from db.updates.models import ACTIVE_STATUSES, TERMINAL_STATUSES, JobEvent, JobStatus, UpdateJob


def claim_job(session: Session, *, job_id: int, worker_id: str, heartbeat_timeout_s: float) -> UpdateJob | None:
    """Take a queued job, or resume one whose worker stopped heartbeating; None if not ours.

    One conditional UPDATE decides: of two workers claiming at once, exactly one matches.
    A job held by a live worker, or already finished, is left alone.
    """
    now = utcnow()
    stale_before = now - timedelta(seconds=heartbeat_timeout_s)
    claimable = or_(
        UpdateJob.status == JobStatus.QUEUED,
        and_(
            UpdateJob.status.in_(ACTIVE_STATUSES),
            or_(
                UpdateJob.heartbeat_at.is_(None),
                UpdateJob.heartbeat_at < stale_before,
                # A redelivery to the same worker (it restarted under the same id).
                UpdateJob.worker_id == worker_id,
            ),
        ),
    )
    changed = rows_changed(
        session,
        update(UpdateJob)
        .where(UpdateJob.id == job_id, claimable)
        .values(
            status=JobStatus.RUNNING,
            attempts=UpdateJob.attempts + 1,
            worker_id=worker_id,
            heartbeat_at=now,
            started_at=func.coalesce(UpdateJob.started_at, now),
        ),
    )
    session.commit()
    if changed != 1:
        return None
    return session.get(UpdateJob, job_id, populate_existing=True)


def jobs_needing_dispatch(session: Session, *, heartbeat_timeout_s: float, queued_grace_s: float) -> list[int]:
    """Jobs a worker should pick up: queued past the grace time, or active with a stale heartbeat."""
    now = utcnow()
    statement = select(UpdateJob.id).where(
        or_(
            and_(
                UpdateJob.status == JobStatus.QUEUED,
                UpdateJob.created_at < now - timedelta(seconds=queued_grace_s),
            ),
            and_(
                UpdateJob.status.in_(ACTIVE_STATUSES),
                or_(
                    UpdateJob.heartbeat_at.is_(None),
                    UpdateJob.heartbeat_at < now - timedelta(seconds=heartbeat_timeout_s),
                ),
            ),
        )
    )
    return list(session.scalars(statement.order_by(UpdateJob.id)))


def heartbeat(
    session: Session,
    *,
    job_id: int,
    worker_id: str,
    phase: str,
    progress: float,
    epoch: int | None = None,
    epochs: int | None = None,
    status: JobStatus | None = None,
    data_path: str | None = None,
) -> bool:
    """Refresh the job's heartbeat and progress; returns whether cancellation was requested.

    Raises JobNotOwned when another worker took the job over or it already finished: the
    caller must stop without writing anything else.
    """
    if status is not None and JobStatus(status) not in ACTIVE_STATUSES:
        raise ValueError(f"a heartbeat can only set running or evaluating, not {status}")
    values = {
        "heartbeat_at": utcnow(),
        "phase": phase,
        "progress": min(max(float(progress), 0.0), 1.0),
    }
    if epoch is not None:
        values["epoch"] = epoch
    if epochs is not None:
        values["epochs"] = epochs
    if status is not None:
        values["status"] = JobStatus(status)
    if data_path is not None:
        values["data_path"] = data_path
    changed = rows_changed(
        session,
        update(UpdateJob)
        .where(
            UpdateJob.id == job_id,
            UpdateJob.worker_id == worker_id,
            UpdateJob.status.in_(ACTIVE_STATUSES),
        )
        .values(**values),
    )
    cancel_requested = session.scalar(select(UpdateJob.cancel_requested).where(UpdateJob.id == job_id))
    session.commit()
    if changed != 1:
        raise JobNotOwned(f"worker {worker_id} no longer holds update job {job_id}")
    return bool(cancel_requested)


def record_event(session: Session, *, job_id: int, phase: str, epoch: int | None, metrics: dict) -> JobEvent:
    """Append one progress event (per-epoch metrics) to a job."""
    event = JobEvent(job_id=job_id, phase=phase, epoch=epoch, metrics=dict(metrics))
    session.add(event)
    session.commit()
    return event


class _Terminal(TypedDict, total=False):
    """The columns _finish sets besides finished_at."""

    status: Required[JobStatus]
    error: str
    phase: str


def _finish(session: Session, *, job_id: int, **values: Unpack[_Terminal]) -> bool:
    """Move a job that is not yet finished to a terminal state; False if it already was."""
    changed = rows_changed(
        session,
        update(UpdateJob)
        .where(UpdateJob.id == job_id, UpdateJob.status.not_in(TERMINAL_STATUSES))
        .values(finished_at=utcnow(), **values),
    )
    session.commit()
    return changed == 1


def fail_job(session: Session, *, job_id: int, error: str) -> bool:
    """Mark the job failed with its error; False if it had already finished."""
    return _finish(session, job_id=job_id, status=JobStatus.FAILED, error=error)


def cancel_job_finished(session: Session, *, job_id: int) -> bool:
    """Mark the job cancelled after its worker stopped (nothing registered); False if finished."""
    return _finish(session, job_id=job_id, status=JobStatus.CANCELLED, phase="cancelled")
