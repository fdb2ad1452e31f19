"""The FastAPI application: `uvicorn --factory api.main:create_app`."""

from __future__ import annotations

from fastapi import FastAPI

from api.comparisons.views import router as comparisons_router
from api.dashboard.views import install_dashboard
from api.datasets.views import router as datasets_router
from api.errors import install_error_handlers
from api.flips.views import router as flips_router
from api.metrics import install_metrics
from api.model_versions.views import router as models_router
from api.ops.views import router as ops_router
from api.queue import TaskQueue
from api.updates.views import router as updates_router
from db.base import make_engine, make_session_factory
from db.settings import Settings


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app for these settings (default: from the environment)."""
    settings = settings or Settings()
    app = FastAPI(
        title="flipguard",
        version="0.1.0",
        description="Ship a better classifier without breaking what the old one got right: "
        "update jobs trained with Margin Preserving Training, versions gated on their "
        "negative flip rate, regression reports of every flipped sample.",
    )
    app.state.settings = settings
    app.state.engine = make_engine(settings.database_url)
    app.state.sessions = make_session_factory(app.state.engine)
    app.state.queue = TaskQueue(settings)
    install_error_handlers(app)
    install_metrics(app)
    for router in (datasets_router, models_router, flips_router, comparisons_router, updates_router, ops_router):
        app.include_router(router)
    install_dashboard(app)
    return app
