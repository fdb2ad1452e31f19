"""Database fixtures: a migrated SQLite file and a migrated PostgreSQL database of this run's own.

Every schema is built by running the Alembic migrations, never by create_all.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import create_engine, text

from db.base import make_engine, make_session_factory
from db.migrate import upgrade
from db.tables import metadata

PG_SERVER_URL = os.environ.get("FLIPGUARD_TEST_PG_SERVER", "postgresql+psycopg://postgres@127.0.0.1:5432")


@contextmanager
def private_postgres_database() -> Iterator[str]:
    """A database of its own on the PostgreSQL server, so that two runs can share one server;
    yields its URL and drops it after. No skip when PostgreSQL is down: `make test` starts
    it, and a silent skip would hide every PostgreSQL test."""
    name = f"flipguard_db_{uuid.uuid4().hex[:8]}"
    admin = create_engine(f"{PG_SERVER_URL}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield f"{PG_SERVER_URL}/{name}"
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def empty_postgres() -> Iterator[str]:
    """An empty PostgreSQL database for this test alone."""
    with private_postgres_database() as url:
        yield url


@pytest.fixture(scope="session")
def migrated_postgres() -> Iterator[str]:
    """This run's PostgreSQL database, migrated to head once."""
    with private_postgres_database() as url:
        upgrade(url)
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path) -> str:
    """A migrated, empty database of each backend."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'flipguard.db'}"
        upgrade(url)
        return url
    url = request.getfixturevalue("migrated_postgres")
    engine = make_engine(url)
    tables = ", ".join(table.name for table in metadata.sorted_tables)
    with engine.begin() as connection:
        connection.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    engine.dispose()
    return url


@pytest.fixture
def session_factory(database_url):
    """Sessions on the test database (several, for race tests)."""
    engine = make_engine(database_url)
    yield make_session_factory(engine)
    engine.dispose()


@pytest.fixture
def session(session_factory):
    with session_factory() as session:
        yield session
