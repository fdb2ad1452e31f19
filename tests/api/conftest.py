"""An app on a migrated SQLite file, a filesystem broker folder and a temporary artifact store;
`client` carries an admin token (every scope), `anonymous` none."""

from __future__ import annotations

import pytest
from api_helpers import seed_update
from fastapi.testclient import TestClient

from api.main import create_app
from db.base import make_engine, make_session_factory
from db.migrate import upgrade
from db.settings import Settings
from db.tokens.service import create_token


@pytest.fixture
def settings(tmp_path) -> Settings:
    (tmp_path / "data").mkdir()
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'api.db'}",
        broker_url=f"filesystem://{tmp_path / 'broker'}",
        artifact_root=tmp_path / "artifacts",
        data_roots=[tmp_path / "data"],
        max_upload_bytes=1024 * 1024,  # a small_cnn file is about 370 KB
    )
    upgrade(settings.database_url)
    return settings


@pytest.fixture
def app(settings):
    return create_app(settings)


@pytest.fixture
def make_token(settings):
    """Create a token with these scopes in the test database; returns the token."""
    engine = make_engine(settings.database_url)

    def make(*scopes: str, name: str = "test") -> str:
        with make_session_factory(engine)() as session:
            return create_token(session, name=name, scopes=list(scopes))[1]

    yield make
    engine.dispose()


@pytest.fixture
def client(app, make_token):
    with TestClient(app) as client:
        client.headers["Authorization"] = f"Bearer {make_token('read', 'submit', 'admin', name='admin')}"
        yield client


@pytest.fixture
def anonymous(app):
    with TestClient(app) as client:
        yield client


@pytest.fixture
def session(settings):
    engine = make_engine(settings.database_url)
    with make_session_factory(engine)() as session:
        yield session
    engine.dispose()


@pytest.fixture
def updated(client, session, settings, tmp_path):
    """A base model and its update, registered through the worker's db functions."""
    return seed_update(client, session, settings, tmp_path)
