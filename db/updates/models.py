"""Update jobs (the unit of work a GPU worker claims) and their per-epoch events."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import Float, ForeignKey, Index, String, Text, UniqueConstraint
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
    # contracts.jobs.Gate as a dict: {"max_nfr", "min_accuracy", "max_accuracy_drop", "max_nfr_ratio", "auto_promote"}
    gate: Mapped[dict] = mapped_column(JSONType, default=dict)
    # The grid the job sweeps, defaults applied ({"bias": [0.0, 1.0, 2.0, 4.0]}); null: one model.
    sweep: Mapped[dict | None] = mapped_column(JSONType)
    # contracts.selection.Selection as a dict, resolved; null without a sweep.
    selection: Mapped[dict | None] = mapped_column(JSONType)
    # How the winner was chosen once the sweep ran: contracts.selection.Choice as a dict plus
    # the reference's validation figures ("reference_validation").
    choice: Mapped[dict | None] = mapped_column(JSONType)
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


class UpdateCandidate(Base):
    """One candidate of a sweeping job: its parameters, validation figures and curves, and
    whether it won. Only the winner is registered as a model version."""

    __tablename__ = "update_candidates"
    __table_args__ = (UniqueConstraint("job_id", "index"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("update_jobs.id", ondelete="CASCADE"), index=True)
    # Position in the grid (the order the engine trained them in), from 0.
    index: Mapped[int]
    label: Mapped[str] = mapped_column(String(200))  # "bias=1"
    # The swept fields' values of this candidate ({"bias": 1.0}); the job's method_params hold the rest.
    params: Mapped[dict] = mapped_column(JSONType)
    # mpt.flips.headline of the candidate against the base model on the validation split.
    validation: Mapped[dict] = mapped_column(JSONType)
    # Per-epoch metrics: [{"epoch", "lr", "train_loss", "val_accuracy", "val_nfr"}, ...].
    history: Mapped[list] = mapped_column(JSONType, default=list)
    chosen: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
