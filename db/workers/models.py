"""Worker liveness: each Celery worker refreshes its row every few seconds (worker/liveness.py),
so /health can say which workers serve which queues and how long ago each was last heard from."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from db.base import Base, JSONType, UTCDateTime, utcnow


class WorkerHeartbeat(Base):
    __tablename__ = "worker_heartbeats"

    id: Mapped[int] = mapped_column(primary_key=True)
    # Celery's node name (`-n gpu0@host`), unique among running workers.
    name: Mapped[str] = mapped_column(String(200), unique=True)
    queues: Mapped[list[str]] = mapped_column(JSONType)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    beat_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
