"""Database fixtures for the db unit tests: a migrated SQLite file and a migrated PostgreSQL.

Imported by the test_db_* modules (not a conftest, so it cannot clash with the engine's).
Every schema is built by running the Alembic migrations, never by create_all.
"""

from __future__ import annotations

import os

import pytest
from sqlalchemy import text

from db.base import make_engine, make_session_factory
from db.migrate import downgrade, upgrade
from db.tables import metadata

PG_URL = os.environ.get(
    "FLIPGUARD_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


@pytest.fixture(scope="session")
def migrated_postgres() -> str:
    """The PostgreSQL test database, reset to an empty schema and migrated once per run."""
    # No skip when PostgreSQL is down: `make test` starts it, and a silent skip would hide
    # every PostgreSQL test.
    downgrade(PG_URL, "base")
    upgrade(PG_URL)
    return PG_URL


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


def ready_dataset(session, *, name="fmnist", classes=("a", "b", "c", "d")):
    """A data set the worker has inspected."""
    from db.datasets.models import DatasetFormat
    from db.datasets.service import create_dataset, mark_dataset_ready

    dataset = create_dataset(session, name=name, uri="/data/x", format=DatasetFormat.NPZ)
    return mark_dataset_ready(
        session,
        dataset_id=dataset.id,
        classes=list(classes),
        train_size=100,
        test_size=20,
        image_shape=[1, 28, 28],
        digest="d" * 16,
    )


def uploaded_model(session, *, family="shoes", classes=("a", "b")):
    """A deployed model registered by upload (version 1 of a new family is production)."""
    from db.model_versions.service import register_uploaded_model

    return register_uploaded_model(
        session,
        family=family,
        architecture="small_cnn",
        classes=list(classes),
        artifact_uri="/artifacts/models/base.safetensors",
        sha256="0" * 64,
    )


def model_result(classes=("a", "b", "c", "d")) -> dict:
    """The `model` dict a worker passes to complete_job."""
    return {
        "artifact_uri": "/artifacts/models/new.safetensors",
        "sha256": "1" * 64,
        "architecture": "small_cnn",
        "classes": list(classes),
        "recipe": {"epochs": 2},
        "method": "mpt-kl",
    }
