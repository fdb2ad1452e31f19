"""An update job's completion, across domains: the trained version, its flip reports and
ledger, and the gate's verdict, registered with the job's success in one transaction."""

from __future__ import annotations

from functools import partial
from typing import TypedDict, Unpack

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from contracts.flips import FlipSummary, LedgerRow
from contracts.jobs import Gate, RegisteredModel, SweepResult
from db.base import rows_changed, utcnow
from db.errors import Conflict
from db.flips.models import ReportRole
from db.flips.service import add_report
from db.model_versions.gate import evaluate_gate
from db.model_versions.models import ModelStatus, ModelVersion
from db.model_versions.service import add_version, get_model, set_production
from db.tokens.service import AUTOMATIC_ACTOR
from db.updates.models import TERMINAL_STATUSES, JobStatus, UpdateCandidate, UpdateJob
from db.updates.submission import get_job

VERSION_NUMBER_RETRIES = 3


def complete_job(
    session: Session,
    *,
    job_id: int,
    model: RegisteredModel,
    report: FlipSummary | None,
    ledger: list[LedgerRow] | None,
    images_uri: str | None,
    reference_report: FlipSummary | None,
    reference_model_id: int | None = None,
    sweep: SweepResult | None = None,
) -> ModelVersion:
    """Register the trained version, its flip reports and ledger, apply the gate, finish the job.

    For a sweeping job the version is the winner, and `sweep` (every candidate's validation
    figures and curves, and the choice) is stored with the job. All in one transaction.
    Idempotent: a job that already registered its version returns that version, so a resumed
    job never registers two. `report` and `reference_report` are
    mpt.flips.flip_report summaries against the base model (None for a first version).
    """
    # Two jobs of one family finishing at the same instant can pick the same version number;
    # the unique constraint turns that into an IntegrityError, and a retry takes the next one.
    complete_once = partial(
        _complete_once,
        session,
        job_id=job_id,
        model=model,
        report=report,
        ledger=ledger,
        images_uri=images_uri,
        reference_report=reference_report,
        reference_model_id=reference_model_id,
        sweep=sweep,
    )
    for _ in range(VERSION_NUMBER_RETRIES - 1):
        try:
            return complete_once()
        except IntegrityError:
            session.rollback()
    return complete_once()


class _Result(TypedDict):
    """What complete_job registers: _register_result's arguments besides the job."""

    model: RegisteredModel
    report: FlipSummary | None
    ledger: list[LedgerRow] | None
    images_uri: str | None
    reference_report: FlipSummary | None
    reference_model_id: int | None
    sweep: SweepResult | None


def _complete_once(session: Session, *, job_id: int, **result: Unpack[_Result]) -> ModelVersion:
    """One attempt at complete_job's transaction."""
    # Lock the job row first (a row lock on PostgreSQL, the write lock on SQLite): a second
    # completion waits here, then finds result_model_id set and matches nothing.
    locked_rows = rows_changed(
        session,
        update(UpdateJob)
        .where(
            UpdateJob.id == job_id,
            UpdateJob.result_model_id.is_(None),
            UpdateJob.status.not_in(TERMINAL_STATUSES),
        )
        .values(heartbeat_at=utcnow()),
    )
    if locked_rows != 1:
        session.rollback()
        job = get_job(session, job_id=job_id, loc=("job_id",))
        if job.result_model_id is not None:
            return get_model(session, model_id=job.result_model_id)
        raise Conflict(f"update job {job_id} already {job.status.value}", loc=("job_id",))
    job = get_job(session, job_id=job_id, loc=("job_id",))
    session.refresh(job)
    version = _register_result(session, job=job, **result)
    session.commit()
    return version


def _register_result(
    session: Session,
    *,
    job: UpdateJob,
    model: RegisteredModel,
    report: FlipSummary | None,
    ledger: list[LedgerRow] | None,
    images_uri: str | None,
    reference_report: FlipSummary | None,
    reference_model_id: int | None,
    sweep: SweepResult | None,
) -> ModelVersion:
    """The writes of complete_job, flushed but not committed."""
    version = add_version(
        session,
        family=job.family,
        parent_id=job.base_model_id,
        architecture=model.architecture,
        classes=list(model.classes),
        artifact_uri=model.artifact_uri,
        sha256=model.sha256,
        status=ModelStatus.CANDIDATE,
        job_id=job.id,
        recipe=model.recipe,
        method=model.method,
    )
    if job.base_model_id is not None and report is not None:
        add_report(
            session,
            model_id=version.id,
            baseline_model_id=job.base_model_id,
            role=ReportRole.MODEL,
            summary=report,
            images_uri=images_uri,
            ledger=ledger,
        )
    if job.base_model_id is not None and reference_report is not None:
        add_report(
            session,
            model_id=version.id,
            baseline_model_id=job.base_model_id,
            role=ReportRole.REFERENCE,
            summary=reference_report,
        )

    if sweep is not None:
        winner = sweep.choice.winner
        for candidate in sweep.candidates:
            session.add(
                UpdateCandidate(
                    job_id=job.id,
                    index=candidate.index,
                    label=candidate.label,
                    params=dict(candidate.params),
                    validation=dict(candidate.validation),
                    history=list(candidate.history),
                    chosen=candidate.index == winner,
                )
            )
        job.choice = {**sweep.choice.to_dict(), "reference_validation": dict(sweep.reference_validation)}

    gate = Gate(**(job.gate or {}))  # the job row keeps its gate as JSON
    verdict = evaluate_gate(gate, report, reference_report)
    version.gate_verdict = dict(verdict)  # stored as JSON
    if not verdict["passed"]:
        version.status = ModelStatus.REJECTED
    elif gate.auto_promote:
        set_production(
            session, model=version, reason="gate passed (auto_promote)", forced=False, promoted_by=AUTOMATIC_ACTOR
        )

    job.status = JobStatus.SUCCEEDED
    job.phase = "done"
    job.progress = 1.0
    job.result_model_id = version.id
    job.reference_model_id = reference_model_id or job.reference_model_id
    job.finished_at = utcnow()
    job.error = None
    session.flush()
    return version
