"""Update jobs as the API sees them: submit (idempotently), read, list, cancel.

Job state lives in the database, not in Celery: a cancel is a conditional UPDATE, so a worker
and a cancelling user cannot both win.
"""

from __future__ import annotations

from dataclasses import asdict

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from contracts.jobs import JobRequest
from contracts.limits import duplicates
from contracts.selection import SweepError, resolve
from db.base import rows_changed, utcnow
from db.datasets.models import Dataset, DatasetStatus
from db.datasets.service import get_dataset
from db.errors import Conflict, InvalidInput, NotFound
from db.model_versions.models import ModelVersion
from db.pagination import Page, paginate
from db.updates.models import ACTIVE_STATUSES, JobEvent, JobStatus, UpdateCandidate, UpdateJob, UpdateMethod

# The only method that needs no predecessor: every other one distils from the base model.
FROM_SCRATCH_METHOD = UpdateMethod.INDEPENDENT


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


def list_candidates(session: Session, *, job_id: int) -> list[UpdateCandidate]:
    """A sweeping job's candidates in grid order (none before the job succeeds, or without a sweep)."""
    return list(
        session.scalars(select(UpdateCandidate).where(UpdateCandidate.job_id == job_id).order_by(UpdateCandidate.index))
    )


def count_jobs_by_status(session: Session) -> dict[str, int]:
    """How many jobs are in each status (every status present, zeros included)."""
    counts = dict(session.execute(select(UpdateJob.status, func.count()).group_by(UpdateJob.status)).all())
    return {status.value: counts.get(status, 0) for status in JobStatus}


def _find_by_idempotency_key(session: Session, *, idempotency_key: str, request_hash: str | None) -> UpdateJob | None:
    """The job an earlier request with this key created; Conflict if that request differed."""
    job = session.scalar(select(UpdateJob).where(UpdateJob.idempotency_key == idempotency_key))
    if job is not None and job.request_hash != request_hash:
        raise Conflict(
            "this Idempotency-Key was used with a different request body",
            loc=("header", "Idempotency-Key"),
        )
    return job


def _check_classes(*, requested: tuple[str, ...] | None, dataset_classes: list[str], base: ModelVersion | None) -> None:
    """Training classes must exist in the data set and keep every class of the base model."""
    # Sets and a Counter: linear in the number of classes (lists may hold 10,000 names).
    known = set(dataset_classes)
    if requested is not None:
        twice = duplicates(requested)
        if twice:
            raise InvalidInput(f"classes listed twice: {twice}", loc=("body", "classes"))
        unknown = [name for name in requested if name not in known]
        if unknown:
            raise InvalidInput(f"classes not in the data set: {unknown}", loc=("body", "classes"))
    if base is None:
        return
    missing = [name for name in base.classes if name not in known]
    if missing:
        raise InvalidInput(
            f"the data set lacks classes of base model {base.id}: {missing}",
            loc=("body", "dataset_id"),
        )
    if requested is not None:
        chosen = set(requested)
        dropped = [name for name in base.classes if name not in chosen]
        if dropped:
            raise InvalidInput(
                f"classes must include every class of base model {base.id}; missing: {dropped}",
                loc=("body", "classes"),
            )


def _ready_dataset(session: Session, *, dataset_id: int) -> Dataset:
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
    request: JobRequest,
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
    family, architecture = request.family, request.architecture
    if request.base_model_id is not None:
        base = session.get(ModelVersion, request.base_model_id)
        if base is None:
            raise InvalidInput(f"model {request.base_model_id} does not exist", loc=("body", "base_model_id"))
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
        if request.method != FROM_SCRATCH_METHOD:
            raise InvalidInput(
                f"method {str(request.method)!r} distils from a base model; "
                f"without one use {FROM_SCRATCH_METHOD.value!r}",
                loc=("body", "method"),
            )

    try:
        sweep, selection = resolve(
            method=request.method,
            fixed_params=request.method_params,
            sweep=request.sweep,
            selection=request.selection,
            has_base=base is not None,
        )
    except SweepError as error:
        raise InvalidInput(error.message, loc=("body", *error.field)) from None
    if sweep is not None and request.recipe.get("validation_fraction") == 0:
        raise InvalidInput(
            "a sweep chooses its winner on the validation split: validation_fraction must be > 0 "
            "(or set method_params.bias to train one model)",
            loc=("body", "recipe", "validation_fraction"),
        )

    dataset = _ready_dataset(session, dataset_id=request.dataset_id)
    _check_classes(requested=request.classes, dataset_classes=dataset.classes or [], base=base)
    if base is None and dataset.image_shape is None and request.recipe.get("image_size") is None:
        # A first version takes the data's own size only when its images share one.
        raise InvalidInput(
            f"the images of data set {dataset.id} differ in size: set recipe.image_size to fit them to one size",
            loc=("body", "recipe", "image_size"),
        )

    job = UpdateJob(
        base_model_id=request.base_model_id,
        family=family,
        architecture=architecture,
        dataset_id=request.dataset_id,
        classes=list(request.classes) if request.classes is not None else None,
        method=request.method,
        method_params=request.method_params,
        recipe=request.recipe,
        gate=asdict(request.gate),
        sweep=sweep,
        selection=selection.to_dict() if selection is not None else None,
        seed=request.seed,
        status=JobStatus.QUEUED,
        progress=0.0,
        epochs=request.recipe.get("epochs"),
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
    cancelled = rows_changed(
        session,
        update(UpdateJob)
        .where(UpdateJob.id == job_id, UpdateJob.status == JobStatus.QUEUED)
        .values(status=JobStatus.CANCELLED, cancel_requested=True, finished_at=utcnow()),
    )
    flagged = cancelled
    if cancelled == 0:
        flagged = rows_changed(
            session,
            update(UpdateJob)
            .where(UpdateJob.id == job_id, UpdateJob.status.in_(ACTIVE_STATUSES))
            .values(cancel_requested=True),
        )
    session.commit()
    job = get_job(session, job_id=job_id)
    if flagged == 0:
        raise Conflict(f"update job {job_id} already {job.status.value}", loc=("path", "job_id"))
    return job
