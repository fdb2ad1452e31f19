"""The Alembic history upgrades an empty database to head and downgrades it back to nothing."""

import re

from sqlalchemy import create_engine, inspect

from contracts.data_formats import DatasetFormat
from contracts.flips import FlipKind
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


def check_constraint_values(url: str, table: str, name: str) -> list[str]:
    """The values a named `column IN (...)` CHECK constraint of the migrated schema admits."""
    engine = create_engine(url)
    checks = {check["name"]: check["sqltext"] for check in inspect(engine).get_check_constraints(table)}
    engine.dispose()
    return re.findall(r"'([^']*)'", checks[name])


def test_migrated_checks_admit_exactly_the_contract_names(tmp_path):
    # Migrations are history and keep their own copy of the names: head must still match.
    url = f"sqlite:///{tmp_path / 'm.db'}"
    upgrade(url)
    assert check_constraint_values(url, "datasets", "ck_datasets_dataset_format") == list(DatasetFormat)
    assert check_constraint_values(url, "flip_samples", "ck_flip_samples_flip_kind") == list(FlipKind)


def assert_head_matches_the_tables(url: str) -> None:
    """Alembic's autogenerate finds nothing to add or drop: the migrations build db/tables.py's schema."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    upgrade(url)
    engine = create_engine(url)
    with engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), metadata)
    engine.dispose()
    assert differences == []


def test_sqlite_head_matches_the_tables(tmp_path):
    assert_head_matches_the_tables(f"sqlite:///{tmp_path / 'm.db'}")


def test_postgresql_head_matches_the_tables(empty_postgres):
    assert_head_matches_the_tables(empty_postgres)
