"""On-demand comparisons: the flip report of any model version against any other, computed
by a light worker when someone asks for a pair that no update job evaluated."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import ForeignKey, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from db.base import Base, UTCDateTime, enum_type, utcnow


class ComparisonStatus(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class Comparison(Base):
    __tablename__ = "comparisons"
    # One computation per ordered pair: a second request finds the first (the cache).
    __table_args__ = (UniqueConstraint("model_id", "baseline_model_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"))
    baseline_model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"))
    # The model whose update job's evaluation split both models are evaluated on.
    split_model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"))
    status: Mapped[ComparisonStatus] = mapped_column(
        enum_type(ComparisonStatus, "comparison_status"), default=ComparisonStatus.QUEUED
    )
    error: Mapped[str | None] = mapped_column(Text)
    report_id: Mapped[int | None] = mapped_column(ForeignKey("flip_reports.id", ondelete="SET NULL"))
    attempts: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
