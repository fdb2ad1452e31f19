"""Flip reports (a model against a baseline on an evaluation split) and their sample ledgers."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import Dialect, Float, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from contracts.flips import FlipKind, FlipSummary
from db.base import Base, JSONType, UTCDateTime, enum_type, utcnow


class ReportRole(enum.StrEnum):
    # The figures of the model version itself against the baseline.
    MODEL = "model"
    # The same figures for the independently trained reference model against the same baseline.
    REFERENCE = "reference"


class FlipSummaryJSON(TypeDecorator):
    """A FlipSummary stored as its JSON form (`to_dict`) and read back typed."""

    impl = JSONType
    cache_ok = True

    def process_bind_param(self, value: FlipSummary | None, dialect: Dialect) -> dict | None:
        return None if value is None else value.to_dict()

    def process_result_value(self, value: dict | None, dialect: Dialect) -> FlipSummary | None:
        return None if value is None else FlipSummary.from_dict(value)


class FlipReport(Base):
    __tablename__ = "flip_reports"
    __table_args__ = (Index("ix_flip_reports_model_baseline", "model_id", "baseline_model_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"))
    baseline_model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"))
    role: Mapped[ReportRole] = mapped_column(enum_type(ReportRole, "report_role"))
    split: Mapped[str] = mapped_column(String(40), default="test")
    k_old: Mapped[int]
    classes: Mapped[list[str]] = mapped_column(JSONType)
    # The whole summary of mpt.flips.flip_report; the scalar columns below are copies for listing.
    summary: Mapped[FlipSummary] = mapped_column(FlipSummaryJSON)
    nfr_old_classes: Mapped[float] = mapped_column(Float)
    nfr_all: Mapped[float] = mapped_column(Float)
    relative_nfr_old_classes: Mapped[float] = mapped_column(Float)
    accuracy: Mapped[float | None] = mapped_column(Float)
    accuracy_old_classes: Mapped[float | None] = mapped_column(Float)
    accuracy_new_classes: Mapped[float | None] = mapped_column(Float)
    negative_flips: Mapped[int]
    samples: Mapped[int]
    # An .npz in the artifact store: `sample_index` (M,) and uint8 `images` (M, C, h, w), each
    # the model's input scaled to at most Recipe.ledger_thumbnail_side pixels a side.
    images_uri: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class FlipSample(Base):
    __tablename__ = "flip_samples"
    __table_args__ = (
        Index("ix_flip_samples_report_kind_label", "report_id", "kind", "label"),
        Index("ix_flip_samples_report_sample", "report_id", "sample_index"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    report_id: Mapped[int] = mapped_column(ForeignKey("flip_reports.id", ondelete="CASCADE"))
    sample_index: Mapped[int]
    label: Mapped[int]
    old_prediction: Mapped[int]
    new_prediction: Mapped[int]
    # Both models' softmax probability of the true label (0 for the old model on new classes).
    old_confidence: Mapped[float] = mapped_column(Float)
    new_confidence: Mapped[float] = mapped_column(Float)
    kind: Mapped[FlipKind] = mapped_column(enum_type(FlipKind, "flip_kind"))
    # A negative flip whose new prediction is one of the new classes.
    is_intrusion: Mapped[bool] = mapped_column(default=False)
