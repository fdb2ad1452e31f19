"""One row per model version of a family, with its lineage and promotion record."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from db.base import Base, JSONType, UTCDateTime, enum_type, utcnow
from db.tokens.models import ACTOR_LENGTH


class ModelStatus(enum.StrEnum):
    CANDIDATE = "candidate"
    PRODUCTION = "production"
    REJECTED = "rejected"
    ARCHIVED = "archived"


class ModelVersion(Base):
    __tablename__ = "models"
    __table_args__ = (
        UniqueConstraint("family", "version"),
        # At most one production version per family, enforced by the database itself.
        Index(
            "uq_models_family_production",
            "family",
            unique=True,
            postgresql_where=text("status = 'production'"),
            sqlite_where=text("status = 'production'"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    family: Mapped[str] = mapped_column(String(200), index=True)
    version: Mapped[int]
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("models.id"))
    architecture: Mapped[str] = mapped_column(String(100))
    classes: Mapped[list[str]] = mapped_column(JSONType)
    artifact_uri: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    status: Mapped[ModelStatus] = mapped_column(enum_type(ModelStatus, "model_status"))
    # The update job that trained this version; null for uploaded models. No foreign key:
    # jobs also point at models, and a plain column keeps the two tables independent.
    job_id: Mapped[int | None]
    recipe: Mapped[dict | None] = mapped_column(JSONType)
    method: Mapped[str | None] = mapped_column(String(40))
    # {"passed": bool, "reasons": [str, ...], ...the figures it was decided on}
    gate_verdict: Mapped[dict | None] = mapped_column(JSONType)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    promoted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    promotion_reason: Mapped[str | None] = mapped_column(Text)
    # Who promoted it: the token (db.tokens.service.actor) or flipguard itself; null before 0009.
    promoted_by: Mapped[str | None] = mapped_column(String(ACTOR_LENGTH))
    forced: Mapped[bool] = mapped_column(default=False)
