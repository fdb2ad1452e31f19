"""Update jobs: submission and cancellation (API), claim, progress and completion (worker).

Job state lives in the database, not in Celery: every transition below is a conditional
UPDATE, so two deliveries of one task, or a worker and a cancelling user, cannot both win.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from contracts.flips import FlipSummary
from db.base import utcnow
from db.datasets.models import DatasetStatus
from db.datasets.service import get_dataset
from db.errors import Conflict, InvalidInput, JobNotOwned, NotFound
from db.flips.models import ReportRole
from db.flips.service import add_ledger, add_report, summary_columns
from db.model_versions.models import ModelStatus, ModelVersion
from db.model_versions.service import add_version, get_model, set_production
from db.pagination import Page, paginate
from db.updates.models import (
    ACTIVE_STATUSES,
    TERMINAL_STATUSES,
    JobEvent,
    JobStatus,
    UpdateJob,
    UpdateMethod,
)

# The only method that needs no predecessor: every other one distils from the base model.
FROM_SCRATCH_METHOD = UpdateMethod.INDEPENDENT
VERSION_NUMBER_RETRIES = 3


def get_job(session: Session, *, job_id: int, loc: tuple = ("path", "job_id")) -> UpdateJob:
    """The job with this id; NotFound naming `loc` otherwise."""
    job = session.get(UpdateJob, job_id)
    if job is None:
        raise NotFound(f"update job {job_id} does not exist", loc=loc)
    return job


def list_jobs(
    session: Session, *, status: JobStatus | None = None, page: int = 1, page_size: int = 50
) -> Page[UpdateJob]:
    """Jobs, newest first, optionally of one status."""
    statement = select(UpdateJob).order_by(UpdateJob.id.desc())
    if status is not None:
        statement = statement.where(UpdateJob.status == status)
    return paginate(session, statement, page=page, page_size=page_size)


def list_events(session: Session, *, job_id: int) -> list[JobEvent]:
    """A job's events in the order they were recorded."""
    return list(session.scalars(select(JobEvent).where(JobEvent.job_id == job_id).order_by(JobEvent.id)))


def count_jobs_by_status(session: Session) -> dict[str, int]:
    """How many jobs are in each status (every status present, zeros included)."""
    counts = dict(session.execute(select(UpdateJob.status, func.count()).group_by(UpdateJob.status)).all())
    return {status.value: counts.get(status, 0) for status in JobStatus}


def _find_by_idempotency_key(session: Session, *, idempotency_key: str, request_hash: str) -> UpdateJob | None:
    """The job an earlier request with this key created; Conflict if that request differed."""
    job = session.scalar(select(UpdateJob).where(UpdateJob.idempotency_key == idempotency_key))
    if job is not None and job.request_hash != request_hash:
        raise Conflict(
            "this Idempotency-Key was used with a different request body",
            loc=("header", "Idempotency-Key"),
        )
    return job


def _check_classes(*, requested: list[str] | None, dataset_classes: list[str], base: ModelVersion | None) -> None:
    """Training classes must exist in the data set and keep every class of the base model."""
    if requested is not None:
        duplicates = sorted({name for name in requested if requested.count(name) > 1})
        if duplicates:
            raise InvalidInput(f"classes listed twice: {duplicates}", loc=("body", "classes"))
        unknown = [name for name in requested if name not in dataset_classes]
        if unknown:
            raise InvalidInput(f"classes not in the data set: {unknown}", loc=("body", "classes"))
    if base is None:
        return
    missing = [name for name in base.classes if name not in dataset_classes]
    if missing:
        raise InvalidInput(
            f"the data set lacks classes of base model {base.id}: {missing}",
            loc=("body", "dataset_id"),
        )
    if requested is not None:
        dropped = [name for name in base.classes if name not in requested]
        if dropped:
            raise InvalidInput(
                f"classes must include every class of base model {base.id}; missing: {dropped}",
                loc=("body", "classes"),
            )


def _ready_dataset(session: Session, *, dataset_id: int):
    """The data set an update trains on: it must exist and have been inspected."""
    try:
        dataset = get_dataset(session, dataset_id=dataset_id, loc=("body", "dataset_id"))
    except NotFound as missing:
        raise InvalidInput(missing.message, loc=missing.loc) from None
    if dataset.status != DatasetStatus.READY:
        raise Conflict(
            f"data set {dataset_id} is {dataset.status.value}, not ready"
            + (f": {dataset.error}" if dataset.error else ""),
            loc=("body", "dataset_id"),
        )
    return dataset


def create_job(
    session: Session,
    *,
    base_model_id: int | None,
    family: str | None,
    architecture: str | None,
    dataset_id: int,
    classes: list[str] | None,
    method: str,
    method_params: dict,
    recipe: dict,
    gate: dict,
    seed: int,
    idempotency_key: str | None = None,
    request_hash: str | None = None,
) -> tuple[UpdateJob, bool]:
    """Validate and queue an update job; returns (job, created).

    With an idempotency key, a repeat of the same request returns the first job
    (created=False) and a different request with the same key is a Conflict. Concurrent
    first requests race on the key's unique constraint; the loser returns the winner's job.
    """
    if idempotency_key is not None:
        existing = _find_by_idempotency_key(session, idempotency_key=idempotency_key, request_hash=request_hash)
        if existing is not None:
            return existing, False

    base = None
    if base_model_id is not None:
        base = session.get(ModelVersion, base_model_id)
        if base is None:
            raise InvalidInput(f"model {base_model_id} does not exist", loc=("body", "base_model_id"))
        if family is not None and family != base.family:
            raise InvalidInput(
                f"family {family!r} differs from the base model's family {base.family!r}",
                loc=("body", "family"),
            )
        family = base.family
        architecture = architecture or base.architecture
    else:
        if family is None:
            raise InvalidInput("family is required without a base model", loc=("body", "family"))
        if architecture is None:
            raise InvalidInput("architecture is required without a base model", loc=("body", "architecture"))
        if method != FROM_SCRATCH_METHOD:
            raise InvalidInput(
                f"method {str(method)!r} distils from a base model; without one use {FROM_SCRATCH_METHOD.value!r}",
                loc=("body", "method"),
            )

    dataset = _ready_dataset(session, dataset_id=dataset_id)
    _check_classes(requested=classes, dataset_classes=dataset.classes or [], base=base)

    job = UpdateJob(
        base_model_id=base_model_id,
        family=family,
        architecture=architecture,
        dataset_id=dataset_id,
        classes=classes,
        method=method,
        method_params=method_params,
        recipe=recipe,
        gate=gate,
        seed=seed,
        status=JobStatus.QUEUED,
        progress=0.0,
        epochs=recipe.get("epochs"),
        idempotency_key=idempotency_key,
        request_hash=request_hash,
    )
    session.add(job)
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        if idempotency_key is None:
            raise
        existing = _find_by_idempotency_key(session, idempotency_key=idempotency_key, request_hash=request_hash)
        if existing is None:
            raise
        return existing, False
    return job, True


def request_cancel(session: Session, *, job_id: int) -> UpdateJob:
    """Cancel a job: a queued one at once, a running one by flagging it for its worker."""
    cancelled = session.execute(
        update(UpdateJob)
        .where(UpdateJob.id == job_id, UpdateJob.status == JobStatus.QUEUED)
        .values(status=JobStatus.CANCELLED, cancel_requested=True, finished_at=utcnow())
    )
    flagged = cancelled
    if cancelled.rowcount == 0:
        flagged = session.execute(
            update(UpdateJob)
            .where(UpdateJob.id == job_id, UpdateJob.status.in_(ACTIVE_STATUSES))
            .values(cancel_requested=True)
        )
    session.commit()
    job = get_job(session, job_id=job_id)
    if flagged.rowcount == 0:
        raise Conflict(f"update job {job_id} already {job.status.value}", loc=("path", "job_id"))
    return job


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
    result = session.execute(
        update(UpdateJob)
        .where(UpdateJob.id == job_id, claimable)
        .values(
            status=JobStatus.RUNNING,
            attempts=UpdateJob.attempts + 1,
            worker_id=worker_id,
            heartbeat_at=now,
            started_at=func.coalesce(UpdateJob.started_at, now),
        )
    )
    session.commit()
    if result.rowcount != 1:
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
    result = session.execute(
        update(UpdateJob)
        .where(
            UpdateJob.id == job_id,
            UpdateJob.worker_id == worker_id,
            UpdateJob.status.in_(ACTIVE_STATUSES),
        )
        .values(**values)
    )
    cancel_requested = session.scalar(select(UpdateJob.cancel_requested).where(UpdateJob.id == job_id))
    session.commit()
    if result.rowcount != 1:
        raise JobNotOwned(f"worker {worker_id} no longer holds update job {job_id}")
    return bool(cancel_requested)


def record_event(session: Session, *, job_id: int, phase: str, epoch: int | None, metrics: dict) -> JobEvent:
    """Append one progress event (per-epoch metrics) to a job."""
    event = JobEvent(job_id=job_id, phase=phase, epoch=epoch, metrics=dict(metrics))
    session.add(event)
    session.commit()
    return event


def _finish(session: Session, *, job_id: int, **values) -> bool:
    """Move a job that is not yet finished to a terminal state; False if it already was."""
    result = session.execute(
        update(UpdateJob)
        .where(UpdateJob.id == job_id, UpdateJob.status.not_in(TERMINAL_STATUSES))
        .values(finished_at=utcnow(), **values)
    )
    session.commit()
    return result.rowcount == 1


def fail_job(session: Session, *, job_id: int, error: str) -> bool:
    """Mark the job failed with its error; False if it had already finished."""
    return _finish(session, job_id=job_id, status=JobStatus.FAILED, error=error)


def cancel_job_finished(session: Session, *, job_id: int) -> bool:
    """Mark the job cancelled after its worker stopped (nothing registered); False if finished."""
    return _finish(session, job_id=job_id, status=JobStatus.CANCELLED, phase="cancelled")


def evaluate_gate(gate: dict, summary: FlipSummary | None) -> dict:
    """The gate's verdict on a model's report: {"passed", "reasons", figures checked}."""
    figures = summary_columns(summary) if summary is not None else {}
    nfr = figures.get("nfr_old_classes")
    accuracy = figures.get("accuracy")
    reasons = []
    max_nfr = gate.get("max_nfr")
    min_accuracy = gate.get("min_accuracy")
    if max_nfr is not None:
        if nfr is None:
            reasons.append("max_nfr not checked: no predecessor to compare with")
        elif nfr > max_nfr:
            reasons.append(f"nfr_old_classes {nfr:.4f} > max_nfr {max_nfr}")
    if min_accuracy is not None:
        if accuracy is None:
            reasons.append("min_accuracy not checked: no evaluation report")
        elif accuracy < min_accuracy:
            reasons.append(f"accuracy {accuracy:.4f} < min_accuracy {min_accuracy}")
    failed = [reason for reason in reasons if "not checked" not in reason]
    return {
        "passed": not failed,
        "reasons": reasons,
        "nfr_old_classes": nfr,
        "accuracy": accuracy,
        "max_nfr": max_nfr,
        "min_accuracy": min_accuracy,
    }


def complete_job(
    session: Session,
    *,
    job_id: int,
    model: dict,
    report: FlipSummary | None,
    ledger: list[dict] | None,
    images_uri: str | None,
    reference_report: FlipSummary | None,
    reference_model_id: int | None = None,
) -> ModelVersion:
    """Register the trained version, its flip reports and ledger, apply the gate, finish the job.

    All in one transaction. Idempotent: a job that already registered its version returns
    that version, so a resumed job never registers two. `model` holds artifact_uri, sha256,
    architecture, classes, recipe, method; `report` and `reference_report` are
    mpt.flips.flip_report summaries against the base model (None for a first version).
    """
    # Two jobs of one family finishing at the same instant can pick the same version number;
    # the unique constraint turns that into an IntegrityError, and a retry takes the next one.
    for attempt in range(VERSION_NUMBER_RETRIES):
        try:
            return _complete_once(
                session,
                job_id=job_id,
                model=model,
                report=report,
                ledger=ledger,
                images_uri=images_uri,
                reference_report=reference_report,
                reference_model_id=reference_model_id,
            )
        except IntegrityError:
            session.rollback()
            if attempt == VERSION_NUMBER_RETRIES - 1:
                raise


def _complete_once(session: Session, *, job_id: int, **result) -> ModelVersion:
    """One attempt at complete_job's transaction."""
    # Lock the job row first (a row lock on PostgreSQL, the write lock on SQLite): a second
    # completion waits here, then finds result_model_id set and matches nothing.
    locked = session.execute(
        update(UpdateJob)
        .where(
            UpdateJob.id == job_id,
            UpdateJob.result_model_id.is_(None),
            UpdateJob.status.not_in(TERMINAL_STATUSES),
        )
        .values(heartbeat_at=utcnow())
    )
    if locked.rowcount != 1:
        session.rollback()
        job = get_job(session, job_id=job_id, loc=("job_id",))
        if job.result_model_id is not None:
            return get_model(session, model_id=job.result_model_id)
        raise Conflict(f"update job {job_id} already {job.status.value}", loc=("job_id",))
    job = session.get(UpdateJob, job_id, populate_existing=True)
    version = _register_result(session, job=job, **result)
    session.commit()
    return version


def _register_result(
    session: Session,
    *,
    job: UpdateJob,
    model: dict,
    report: FlipSummary | None,
    ledger: list[dict] | None,
    images_uri: str | None,
    reference_report: FlipSummary | None,
    reference_model_id: int | None,
) -> ModelVersion:
    """The writes of complete_job, flushed but not committed."""
    version = add_version(
        session,
        family=job.family,
        parent_id=job.base_model_id,
        architecture=model["architecture"],
        classes=model["classes"],
        artifact_uri=model["artifact_uri"],
        sha256=model["sha256"],
        status=ModelStatus.CANDIDATE,
        job_id=job.id,
        recipe=model.get("recipe", job.recipe),
        method=model.get("method", job.method),
    )
    if job.base_model_id is not None and report is not None:
        stored = add_report(
            session,
            model_id=version.id,
            baseline_model_id=job.base_model_id,
            role=ReportRole.MODEL,
            summary=report,
            images_uri=images_uri,
        )
        add_ledger(session, report_id=stored.id, k_old=stored.k_old, rows=ledger or [])
    if job.base_model_id is not None and reference_report is not None:
        add_report(
            session,
            model_id=version.id,
            baseline_model_id=job.base_model_id,
            role=ReportRole.REFERENCE,
            summary=reference_report,
        )

    verdict = evaluate_gate(job.gate or {}, report)
    version.gate_verdict = verdict
    if not verdict["passed"]:
        version.status = ModelStatus.REJECTED
    elif (job.gate or {}).get("auto_promote"):
        set_production(session, model=version, reason="gate passed (auto_promote)", forced=False)

    job.status = JobStatus.SUCCEEDED
    job.phase = "done"
    job.progress = 1.0
    job.result_model_id = version.id
    job.reference_model_id = reference_model_id or job.reference_model_id
    job.finished_at = utcnow()
    job.error = None
    session.flush()
    return version
