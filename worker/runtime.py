"""What every task of a worker process shares: its settings, its database sessions, the artifact
store's paths, the data limits, and a way to write through a database restart."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import TypeVar

from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from db.base import make_engine, make_session_factory
from db.settings import Settings
from mpt.limits import DataLimits

log = logging.getLogger(__name__)

T = TypeVar("T")


@cache
def settings() -> Settings:
    return Settings()


@cache
def session_factory() -> sessionmaker[Session]:
    return make_session_factory(make_engine(settings().database_url))


def artifact_path(uri: str) -> Path:
    return settings().artifact_path(uri)


def data_limits() -> DataLimits:
    """What a worker may read from a data set, from the settings (named in errors)."""
    current = settings()
    fields = ("max_bytes", "max_images", "max_image_pixels", "max_classes")
    return DataLimits(
        **{field: getattr(current, f"dataset_{field}") for field in fields},
        names=tuple((field, f"FLIPGUARD_DATASET_{field.upper()}") for field in fields),
    )


def with_db_retries(write: Callable[[Session], T], *, attempts: int = 30, delay_s: float = 2.0) -> T:
    """Run a database write, retrying while the database is unreachable (a restart)."""
    for attempt in range(1, attempts + 1):
        try:
            with session_factory()() as session:
                return write(session)
        except OperationalError:
            if attempt == attempts:
                raise
            log.warning("database unreachable, retrying in %.0f s (%d/%d)", delay_s, attempt, attempts)
            time.sleep(delay_s)
    raise ValueError(f"with_db_retries needs at least one attempt, got {attempts}")


def given_up(*, runs: int, cause: str, setting: str, limit: int) -> str:
    """Why a row is failed unread once every earlier claim of it ended without a result."""
    return f"given up after {runs} runs that each ended without a result ({cause}; {setting}={limit})"
