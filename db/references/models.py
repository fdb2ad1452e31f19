"""Cache of independently trained reference models, reused across update jobs."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String, Text
from sqlalchemy.orm import Mapped, mapped_column

from db.base import Base, JSONType, UTCDateTime, utcnow


class ReferenceModel(Base):
    __tablename__ = "reference_models"

    id: Mapped[int] = mapped_column(primary_key=True)
    # Computed by the worker from data digest, architecture, recipe digest, seed and classes.
    cache_key: Mapped[str] = mapped_column(String(200), unique=True)
    artifact_uri: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    architecture: Mapped[str] = mapped_column(String(100))
    classes: Mapped[list[str]] = mapped_column(JSONType)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
