"""An app on a migrated SQLite file, a filesystem broker folder and a temporary artifact store."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from db.base import make_engine, make_session_factory
from db.migrate import upgrade
from db.settings import Settings


@pytest.fixture
def settings(tmp_path) -> Settings:
    (tmp_path / "data").mkdir()
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'api.db'}",
        broker_url=f"filesystem://{tmp_path / 'broker'}",
        artifact_root=tmp_path / "artifacts",
        data_roots=[tmp_path / "data"],
        max_upload_bytes=64 * 1024,
    )
    upgrade(settings.database_url)
    return settings


@pytest.fixture
def client(settings):
    with TestClient(create_app(settings)) as client:
        yield client


@pytest.fixture
def session(settings):
    engine = make_engine(settings.database_url)
    with make_session_factory(engine)() as session:
        yield session
    engine.dispose()
