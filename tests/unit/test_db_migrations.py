"""The Alembic history upgrades an empty database to head and downgrades it back to nothing."""

from sqlalchemy import create_engine, inspect, text

from db.migrate import downgrade, upgrade
from db.tables import metadata
from db_fixtures import PG_URL

SCRATCH_DATABASE = "flipguard_migrations"


def assert_round_trip(url):
    upgrade(url)
    engine = create_engine(url)
    assert set(inspect(engine).get_table_names()) >= {t.name for t in metadata.sorted_tables}
    downgrade(url, "base")
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    engine.dispose()


def test_sqlite_round_trip(tmp_path):
    assert_round_trip(f"sqlite:///{tmp_path / 'm.db'}")


def test_postgresql_round_trip_on_a_fresh_database():
    admin = create_engine(PG_URL.rsplit("/", 1)[0] + "/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f"DROP DATABASE IF EXISTS {SCRATCH_DATABASE} WITH (FORCE)"))
        connection.execute(text(f"CREATE DATABASE {SCRATCH_DATABASE}"))
    try:
        assert_round_trip(PG_URL.rsplit("/", 1)[0] + f"/{SCRATCH_DATABASE}")
    finally:
        with admin.connect() as connection:
            connection.execute(text(f"DROP DATABASE IF EXISTS {SCRATCH_DATABASE} WITH (FORCE)"))
        admin.dispose()


def test_any_db_import_registers_every_table():
    import subprocess
    import sys

    code = ("import db.jobs.models; from db.base import Base; "
            "assert 'reference_models' in Base.metadata.tables, sorted(Base.metadata.tables)")
    subprocess.run([sys.executable, "-c", code], check=True)
