"""Update jobs (the unit of work a GPU worker claims) and their per-epoch events."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import Float, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from contracts.methods import UpdateMethod as UpdateMethod  # the engine's names, re-exported for jobs
from db.base import Base, JSONType, UTCDateTime, enum_type, utcnow


class JobStatus(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    EVALUATING = "evaluating"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


ACTIVE_STATUSES = (JobStatus.RUNNING, JobStatus.EVALUATING)
TERMINAL_STATUSES = (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)


class UpdateJob(Base):
    __tablename__ = "update_jobs"

    id: Mapped[int] = mapped_column(primary_key=True)
    base_model_id: Mapped[int | None] = mapped_column(ForeignKey("models.id"))
    family: Mapped[str] = mapped_column(String(200))
    architecture: Mapped[str] = mapped_column(String(100))
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id"))
    # Training classes by name; null means every class of the data set.
    classes: Mapped[list[str] | None] = mapped_column(JSONType)
    method: Mapped[str] = mapped_column(String(40))
    method_params: Mapped[dict] = mapped_column(JSONType, default=dict)
    recipe: Mapped[dict] = mapped_column(JSONType, default=dict)
    # {"max_nfr": float | None, "min_accuracy": float | None, "auto_promote": bool}
    gate: Mapped[dict] = mapped_column(JSONType, default=dict)
    seed: Mapped[int] = mapped_column(default=0)
    status: Mapped[JobStatus] = mapped_column(enum_type(JobStatus, "job_status"), default=JobStatus.QUEUED, index=True)
    phase: Mapped[str | None] = mapped_column(String(40))
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    epoch: Mapped[int | None]
    epochs: Mapped[int | None]
    attempts: Mapped[int] = mapped_column(default=0)
    worker_id: Mapped[str | None] = mapped_column(String(200))
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    cancel_requested: Mapped[bool] = mapped_column(default=False)
    error: Mapped[str | None] = mapped_column(Text)
    # How the worker fed the images: "resident" (held on the device) or "streaming" (decoded
    # per batch); null until it has chosen (mpt.recipe.Recipe.data_path).
    data_path: Mapped[str | None] = mapped_column(String(20))
    result_model_id: Mapped[int | None] = mapped_column(ForeignKey("models.id"))
    reference_model_id: Mapped[int | None] = mapped_column(ForeignKey("reference_models.id"))
    # "<token id>:<Idempotency-Key>": keys are scoped to the token that sent them.
    idempotency_key: Mapped[str | None] = mapped_column(String(240), unique=True)
    # Hash of the request body sent with the idempotency key: a replay must match it.
    request_hash: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class JobEvent(Base):
    __tablename__ = "job_events"
    __table_args__ = (Index("ix_job_events_job_id_id", "job_id", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("update_jobs.id", ondelete="CASCADE"))
    phase: Mapped[str] = mapped_column(String(40))
    epoch: Mapped[int | None]
    # train_loss, val_accuracy, val_nfr, lr, ...
    metrics: Mapped[dict] = mapped_column(JSONType, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
