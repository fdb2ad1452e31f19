"""Alembic environment: the database URL comes from the caller or from FLIPGUARD_DATABASE_URL."""

from __future__ import annotations

from logging.config import fileConfig

from alembic import context

from db.base import make_engine
from db.settings import Settings
from db.tables import metadata

config = context.config
if config.config_file_name is not None:
    fileConfig(config.config_file_name)
database_url = config.attributes.get("database_url") or Settings().database_url


def run_offline() -> None:
    """Emit SQL to stdout instead of connecting (`alembic upgrade head --sql`)."""
    context.configure(
        url=database_url,
        target_metadata=metadata,
        literal_binds=True,
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    """Connect and migrate; batch mode lets later migrations alter SQLite tables."""
    engine = make_engine(database_url)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
