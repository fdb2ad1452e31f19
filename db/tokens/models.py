"""API tokens: bearer credentials with scopes, stored only as sha256 digests."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from db.base import Base, JSONType, UTCDateTime, utcnow

# The longest description of who acted (db.tokens.service.actor) that a table stores.
ACTOR_LENGTH = 200


class Scope(enum.StrEnum):
    """What a token may do: read everything, submit work (updates, data sets, models), promote."""

    READ = "read"
    SUBMIT = "submit"
    ADMIN = "admin"


class ApiToken(Base):
    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    # Hex sha256 of the token; the token itself is shown once at creation and never stored.
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    scopes: Mapped[list[str]] = mapped_column(JSONType)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
