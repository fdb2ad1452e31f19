"""The Alembic history upgrades an empty database to head and downgrades it back to nothing."""

from sqlalchemy import create_engine, inspect

from db.migrate import downgrade, upgrade
from db.tables import metadata


def assert_round_trip(url):
    upgrade(url)
    engine = create_engine(url)
    assert set(inspect(engine).get_table_names()) >= {t.name for t in metadata.sorted_tables}
    downgrade(url, "base")
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    engine.dispose()


def test_sqlite_round_trip(tmp_path):
    assert_round_trip(f"sqlite:///{tmp_path / 'm.db'}")


def test_postgresql_round_trip_on_a_fresh_database(empty_postgres):
    assert_round_trip(empty_postgres)


def test_any_db_import_registers_every_table():
    import subprocess
    import sys

    code = (
        "import db.updates.models; from db.base import Base; "
        "assert 'reference_models' in Base.metadata.tables, sorted(Base.metadata.tables)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
