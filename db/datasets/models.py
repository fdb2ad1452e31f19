"""A registered data set: where it lives and what the worker found in it."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import String, Text
from sqlalchemy.orm import Mapped, mapped_column

from contracts.data_formats import DatasetFormat
from db.base import Base, JSONType, UTCDateTime, enum_type, utcnow


class DatasetStatus(enum.StrEnum):
    PENDING = "pending"
    READY = "ready"
    FAILED = "failed"


class Dataset(Base):
    __tablename__ = "datasets"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    uri: Mapped[str] = mapped_column(Text)
    format: Mapped[DatasetFormat] = mapped_column(enum_type(DatasetFormat, "dataset_format"))
    status: Mapped[DatasetStatus] = mapped_column(
        enum_type(DatasetStatus, "dataset_status"), default=DatasetStatus.PENDING
    )
    error: Mapped[str | None] = mapped_column(Text)
    # Ordered class names: index i of a label is classes[i].
    classes: Mapped[list[str] | None] = mapped_column(JSONType)
    train_size: Mapped[int | None]
    test_size: Mapped[int | None]
    # [C, H, W] when every image has one size, else null (fitted to a recipe's image_size).
    image_shape: Mapped[list[int] | None] = mapped_column(JSONType)
    # From the files' headers: {"channels", "min_size": [H, W], "max_size": [H, W], "modes": {mode: count}}.
    image_summary: Mapped[dict | None] = mapped_column(JSONType)
    digest: Mapped[str | None] = mapped_column(String(128))
    # Deliveries of the inspection task, counted before each starts reading (a data set that
    # kills the worker reading it is failed after FLIPGUARD_MAX_INSPECT_DELIVERIES), and when
    # the last one began (a delivery older than FLIPGUARD_INSPECT_TIMEOUT_S is presumed dead).
    inspect_attempts: Mapped[int] = mapped_column(default=0, server_default="0")
    inspect_started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # An .npz in the artifact store written at inspection: `labels` (M,) and uint8 `images`
    # (M, C, H, W), a few test images per class for the dashboard (the API reads it without torch).
    samples_uri: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
