"""Flip reports and their per-sample ledgers: storage (worker) and filtered reads (API)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from sqlalchemy import Select, insert, select
from sqlalchemy.orm import Session

from contracts.flips import FlipSummary, LedgerRow, is_intrusion
from db.flips.models import FlipKind, FlipReport, FlipSample, ReportRole
from db.pagination import Page, paginate


def add_report(
    session: Session,
    *,
    model_id: int,
    baseline_model_id: int,
    role: ReportRole,
    summary: FlipSummary,
    split: str = "test",
    images_uri: str | None = None,
    ledger: list[LedgerRow] | None = None,
) -> FlipReport:
    """Store a flip report summary and its ledger rows, if given (flushes; the caller commits)."""
    report = FlipReport(
        model_id=model_id,
        baseline_model_id=baseline_model_id,
        role=role,
        split=split,
        k_old=summary.k_old,
        classes=list(summary.classes),
        summary=summary,
        images_uri=images_uri,
        nfr_old_classes=summary.nfr_old_classes,
        nfr_all=summary.nfr_all,
        relative_nfr_old_classes=summary.relative_nfr_old_classes,
        accuracy=summary.accuracy,
        accuracy_old_classes=summary.accuracy_old_classes,
        accuracy_new_classes=summary.accuracy_new_classes,
        negative_flips=summary.negative_flips,
        samples=summary.samples,
    )
    session.add(report)
    session.flush()
    add_ledger(session, report_id=report.id, k_old=report.k_old, rows=ledger or [])
    return report


def add_ledger(session: Session, *, report_id: int, k_old: int, rows: list[LedgerRow]) -> None:
    """Bulk-insert a report's ledger rows (mpt.flips.FlipLedger.rows()); flushes, no commit."""
    if not rows:
        return
    session.execute(
        insert(FlipSample),
        [
            {
                "report_id": report_id,
                "sample_index": row["sample_index"],
                "label": row["label"],
                "old_prediction": row["old_prediction"],
                "new_prediction": row["new_prediction"],
                "old_confidence": row["old_confidence"],
                "new_confidence": row["new_confidence"],
                "kind": FlipKind(row["kind"]),
                # docs/METHOD.md: an intrusion is a negative flip into one of the new classes.
                "is_intrusion": is_intrusion(
                    negative=row["kind"] == FlipKind.NEGATIVE, new_prediction=row["new_prediction"], k_old=k_old
                ),
            }
            for row in rows
        ],
    )


def find_report(
    session: Session,
    *,
    model_id: int,
    baseline_model_id: int,
    role: ReportRole = ReportRole.MODEL,
) -> FlipReport | None:
    """The latest stored report of a model (or of its reference) against a baseline."""
    return session.scalar(
        select(FlipReport)
        .where(
            FlipReport.model_id == model_id,
            FlipReport.baseline_model_id == baseline_model_id,
            FlipReport.role == role,
        )
        .order_by(FlipReport.id.desc())
        .limit(1)
    )


def _samples_statement(*, report_id: int, kind: FlipKind | None, label: int | None, intrusion: bool | None) -> Select:
    """Ledger rows of one report with the optional filters, in evaluation-sample order."""
    statement = select(FlipSample).where(FlipSample.report_id == report_id)
    if kind is not None:
        statement = statement.where(FlipSample.kind == kind)
    if label is not None:
        statement = statement.where(FlipSample.label == label)
    if intrusion is not None:
        statement = statement.where(FlipSample.is_intrusion == intrusion)
    return statement.order_by(FlipSample.sample_index, FlipSample.id)


def list_samples(
    session: Session,
    *,
    report_id: int,
    kind: FlipKind | None = None,
    label: int | None = None,
    intrusion: bool | None = None,
    page: int = 1,
    page_size: int = 100,
) -> Page[FlipSample]:
    """One page of a report's ledger, filtered by kind, true label and intrusion."""
    statement = _samples_statement(report_id=report_id, kind=kind, label=label, intrusion=intrusion)
    return paginate(session, statement, page=page, page_size=page_size)


def iter_samples(
    session: Session,
    *,
    report_id: int,
    kind: FlipKind | None = None,
    label: int | None = None,
    intrusion: bool | None = None,
) -> Iterator[FlipSample]:
    """Every ledger row matching the filters, fetched in batches (for CSV export)."""
    statement = _samples_statement(report_id=report_id, kind=kind, label=label, intrusion=intrusion)
    yield from session.scalars(statement.execution_options(yield_per=1000))


def get_sample(session: Session, *, report_id: int, sample_index: int) -> FlipSample | None:
    """The ledger row of one evaluation sample in a report, if it flipped."""
    return session.scalar(
        select(FlipSample).where(FlipSample.report_id == report_id, FlipSample.sample_index == sample_index).limit(1)
    )


@dataclass
class VersionFigures:
    """A version's headline figures and what they were measured on.

    `measured_as` is `model` when they come from the version's own report against its
    predecessor (its update job's evaluation split, every class of the version), and
    `baseline` for a version without one (a first or uploaded version): then the accuracy is
    the one its successor's report measured for it, on the samples of its own classes, and
    it has no NFR of its own.
    """

    report_id: int
    measured_as: str
    other_model_id: int
    accuracy: float | None
    samples: int
    classes: int
    split: str
    nfr_old_classes: float | None = None
    nfr_all: float | None = None
    relative_nfr_old_classes: float | None = None

    def describe(self) -> str:
        """Where the figures come from, in words."""
        if self.measured_as == "model":
            return f"{self.samples} {self.split} samples of {self.classes} classes, against model {self.other_model_id}"
        return (
            f"{self.samples} {self.split} samples of its {self.classes} classes, "
            f"as the baseline of model {self.other_model_id}'s report"
        )


def version_figures(session: Session, models: list) -> dict[int, VersionFigures]:
    """Headline figures of each of these versions (two queries whatever their number)."""
    if not models:
        return {}
    ids = [model.id for model in models]
    own = session.scalars(
        select(FlipReport)
        .where(FlipReport.model_id.in_(ids), FlipReport.role == ReportRole.MODEL)
        .order_by(FlipReport.id.desc())
    ).all()
    by_pair: dict[tuple[int, int], FlipReport] = {}
    for report in own:
        by_pair.setdefault((report.model_id, report.baseline_model_id), report)
    as_baseline: dict[int, FlipReport] = {}
    for report in session.scalars(
        select(FlipReport)
        .where(FlipReport.baseline_model_id.in_(ids), FlipReport.role == ReportRole.MODEL)
        .order_by(FlipReport.id)
    ):
        as_baseline.setdefault(report.baseline_model_id, report)
    figures = {}
    for model in models:
        own_report = by_pair.get((model.id, model.parent_id)) if model.parent_id is not None else None
        if own_report is not None:
            report = own_report
            figures[model.id] = VersionFigures(
                report_id=report.id,
                measured_as="model",
                other_model_id=report.baseline_model_id,
                accuracy=report.accuracy,
                samples=report.samples,
                classes=len(report.classes),
                split=report.split,
                nfr_old_classes=report.nfr_old_classes,
                nfr_all=report.nfr_all,
                relative_nfr_old_classes=report.relative_nfr_old_classes,
            )
            continue
        successor = as_baseline.get(model.id)
        if successor is not None:
            old_scope = successor.summary.scopes.old_classes
            figures[model.id] = VersionFigures(
                report_id=successor.id,
                measured_as="baseline",
                other_model_id=successor.model_id,
                accuracy=old_scope.old_accuracy,
                samples=old_scope.samples,
                classes=successor.k_old,
                split=successor.split,
            )
    return figures
