"""On-demand comparisons of two model versions: requested by the API, computed by a light
worker, stored as an ordinary flip report (with its ledger) that later reads find again."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import and_, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from contracts.flips import FlipSummary, LedgerRow
from db.base import rows_changed, utcnow
from db.comparisons.models import Comparison, ComparisonStatus
from db.datasets.models import Dataset, DatasetStatus
from db.errors import Conflict, InvalidInput, NotFound
from db.flips.models import FlipReport, ReportRole
from db.flips.service import add_report, find_report
from db.model_versions.models import ModelVersion
from db.model_versions.service import get_model
from db.updates.models import UpdateJob


def get_comparison(session: Session, *, comparison_id: int, loc: tuple = ("path", "comparison_id")) -> Comparison:
    """The comparison with this id; NotFound naming `loc` otherwise."""
    comparison = session.get(Comparison, comparison_id)
    if comparison is None:
        raise NotFound(f"comparison {comparison_id} does not exist", loc=loc)
    return comparison


def find_comparison(session: Session, *, model_id: int, baseline_model_id: int) -> Comparison | None:
    """The comparison of this ordered pair, if one was ever requested."""
    return session.scalar(
        select(Comparison).where(Comparison.model_id == model_id, Comparison.baseline_model_id == baseline_model_id)
    )


def comparison_for_report(session: Session, *, report_id: int) -> Comparison | None:
    """The comparison that computed this report (None: an update job's report)."""
    return session.scalar(select(Comparison).where(Comparison.report_id == report_id))


def split_source(
    session: Session, *, model: ModelVersion, baseline: ModelVersion, loc: tuple = ("query", "against")
) -> tuple[ModelVersion, UpdateJob]:
    """The version whose update job's evaluation split both models are evaluated on.

    The newer version's (it knows the most classes in a family, where an update keeps every
    class of its base), else the other one's when the newer was uploaded rather than trained.
    Both models' classes must lie inside that split's classes: InvalidInput otherwise.
    """
    newer, older = (model, baseline) if model.id > baseline.id else (baseline, model)
    for candidate, other in ((newer, older), (older, newer)):
        if candidate.job_id is None:
            continue
        job = session.get(UpdateJob, candidate.job_id)
        if job is None:
            continue
        missing = [name for name in other.classes if name not in candidate.classes]
        if missing:
            raise InvalidInput(
                f"model {other.id} knows classes that the evaluation split of model {candidate.id} lacks: "
                f"{missing}; only versions whose classes nest can be compared",
                loc=loc,
            )
        dataset = session.get(Dataset, job.dataset_id)
        if dataset is None or dataset.status != DatasetStatus.READY:
            raise Conflict(
                f"data set {job.dataset_id} of model {candidate.id}'s update job is not ready",
                loc=loc,
            )
        return candidate, job
    raise InvalidInput(
        f"neither model {model.id} nor model {baseline.id} was trained by an update job here, so there is no "
        "evaluation split to compare them on (uploaded models are evaluated only by their successors' jobs)",
        loc=loc,
    )


def request_comparison(
    session: Session,
    *,
    model_id: int,
    baseline_model_id: int,
    model_loc: tuple = ("path", "model_id"),
    baseline_loc: tuple = ("query", "against"),
    retry_failed: bool = True,
) -> tuple[Comparison, bool]:
    """Queue the comparison of `model_id` against `baseline_model_id`; returns (row, queued_now).

    A pair asked for before returns its row (the cache); a failed one is queued again when
    `retry_failed` (else returned failed, so that a reader sees why). Two
    requests racing for a new pair collide on the pair's unique constraint; the loser
    returns the winner's row.
    """
    if model_id == baseline_model_id:
        raise InvalidInput("a model compared with itself has no flips", loc=baseline_loc)
    model = get_model(session, model_id=model_id, loc=model_loc)
    baseline = get_model(session, model_id=baseline_model_id, loc=baseline_loc)
    existing = find_comparison(session, model_id=model_id, baseline_model_id=baseline_model_id)
    stored = find_report(session, model_id=model_id, baseline_model_id=baseline_model_id)
    if existing is None and stored is not None:
        # An update job evaluated this pair already: the comparison is its report.
        existing = Comparison(
            model_id=model_id,
            baseline_model_id=baseline_model_id,
            split_model_id=model_id,
            status=ComparisonStatus.SUCCEEDED,
            report_id=stored.id,
            finished_at=utcnow(),
        )
        session.add(existing)
        try:
            session.commit()
        except IntegrityError:
            session.rollback()
            winner = find_comparison(session, model_id=model_id, baseline_model_id=baseline_model_id)
            if winner is None:
                raise
            return winner, False
        return existing, False
    if existing is not None:
        if existing.status != ComparisonStatus.FAILED or not retry_failed:
            return existing, False
        retried = rows_changed(
            session,
            update(Comparison)
            .where(Comparison.id == existing.id, Comparison.status == ComparisonStatus.FAILED)
            .values(status=ComparisonStatus.QUEUED, error=None, attempts=0, created_at=utcnow(), finished_at=None),
        )
        session.commit()
        session.refresh(existing)
        return existing, retried == 1
    source, _job = split_source(session, model=model, baseline=baseline, loc=baseline_loc)
    comparison = Comparison(
        model_id=model_id,
        baseline_model_id=baseline_model_id,
        split_model_id=source.id,
        status=ComparisonStatus.QUEUED,
    )
    session.add(comparison)
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        winner = find_comparison(session, model_id=model_id, baseline_model_id=baseline_model_id)
        if winner is None:
            raise
        return winner, False
    return comparison, True


def comparisons_needing_dispatch(session: Session, *, stale_after_s: float, queued_grace_s: float) -> list[int]:
    """Comparisons a light worker should pick up: queued past the grace time, or running past `stale_after_s`."""
    now = utcnow()
    statement = select(Comparison.id).where(
        or_(
            and_(
                Comparison.status == ComparisonStatus.QUEUED,
                Comparison.created_at < now - timedelta(seconds=queued_grace_s),
            ),
            # The same line as claim_comparison draws, so that the re-sent delivery can claim it.
            and_(
                Comparison.status == ComparisonStatus.RUNNING,
                Comparison.started_at < now - timedelta(seconds=stale_after_s),
            ),
        )
    )
    return list(session.scalars(statement.order_by(Comparison.id)))


def claim_comparison(session: Session, *, comparison_id: int, stale_after_s: float) -> Comparison | None:
    """Take a queued comparison, or a running one that has been running too long; None if not ours."""
    now = utcnow()
    claimed = rows_changed(
        session,
        update(Comparison)
        .where(
            Comparison.id == comparison_id,
            or_(
                Comparison.status == ComparisonStatus.QUEUED,
                (Comparison.status == ComparisonStatus.RUNNING)
                & (Comparison.started_at < now - timedelta(seconds=stale_after_s)),
            ),
        )
        .values(status=ComparisonStatus.RUNNING, started_at=now, attempts=Comparison.attempts + 1),
    )
    session.commit()
    if claimed != 1:
        return None
    return session.get(Comparison, comparison_id, populate_existing=True)


def _settle(session: Session, *, comparison_id: int, attempt: int, **values: object) -> bool:
    """Finish the comparison with `values` if the delivery that claimed it as `attempt` still
    holds it: once a later delivery claimed it again, the earlier one's outcome is dropped."""
    return (
        rows_changed(
            session,
            update(Comparison)
            .where(
                Comparison.id == comparison_id,
                Comparison.status == ComparisonStatus.RUNNING,
                Comparison.attempts == attempt,
            )
            .values(finished_at=utcnow(), **values),
        )
        == 1
    )


def complete_comparison(
    session: Session,
    *,
    comparison_id: int,
    attempt: int,
    summary: FlipSummary,
    ledger: list[LedgerRow],
    images_uri: str | None,
) -> FlipReport | None:
    """Store the report and its ledger and mark the comparison done, in one transaction; None
    (nothing stored) when another delivery claimed it since `attempt`."""
    comparison = get_comparison(session, comparison_id=comparison_id, loc=("comparison_id",))
    # The claim is checked first, so a stale delivery writes no ledger rows only to roll them back.
    if not _settle(
        session, comparison_id=comparison_id, attempt=attempt, status=ComparisonStatus.SUCCEEDED, error=None
    ):
        session.rollback()
        return None
    report = add_report(
        session,
        model_id=comparison.model_id,
        baseline_model_id=comparison.baseline_model_id,
        role=ReportRole.MODEL,
        summary=summary,
        images_uri=images_uri,
        ledger=ledger,
    )
    comparison.report_id = report.id
    session.commit()
    return report


def fail_comparison(session: Session, *, comparison_id: int, attempt: int, error: str) -> bool:
    """Record why the comparison could not be computed (a later request queues it again); False
    when another delivery claimed it since `attempt`."""
    failed = _settle(session, comparison_id=comparison_id, attempt=attempt, status=ComparisonStatus.FAILED, error=error)
    session.commit()
    return failed
