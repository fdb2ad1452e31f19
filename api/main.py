"""The FastAPI application: `uvicorn --factory api.main:create_app`."""

from __future__ import annotations

from fastapi import FastAPI
from starlette.types import ASGIApp

from api.comparisons.views import router as comparisons_router
from api.dashboard.views import install_dashboard
from api.datasets.views import router as datasets_router
from api.errors import install_error_handlers
from api.flips.views import router as flips_router
from api.guards import install_body_guard
from api.metrics import install_metrics
from api.model_versions.views import router as models_router
from api.ops.views import router as ops_router
from api.partials import remove_orphaned_partials
from api.queue import TaskQueue
from api.security import SecurityHeaders, install_docs
from api.updates.views import router as updates_router
from db.base import make_engine, make_session_factory
from db.migrate import head_revision
from db.settings import Settings


class FlipguardApp(FastAPI):
    """FastAPI with the browser security headers around its whole middleware stack, so that
    they reach even the 500 responses of Starlette's outermost error middleware."""

    def build_middleware_stack(self) -> ASGIApp:
        return SecurityHeaders(super().build_middleware_stack())


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app for these settings (default: from the environment)."""
    settings = settings or Settings()
    app = FlipguardApp(
        # Served by api.security.install_docs, under a Content-Security-Policy with a nonce.
        docs_url=None,
        redoc_url=None,
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
    app.state.schema_head = head_revision()  # what /health expects the database to report
    # Uploads a killed process left half-written (live ones hold a lock and stay).
    remove_orphaned_partials(settings)
    install_error_handlers(app)
    install_body_guard(app, settings)
    install_metrics(app)
    for router in (datasets_router, models_router, flips_router, comparisons_router, updates_router, ops_router):
        app.include_router(router)
    install_dashboard(app)
    install_docs(app)
    return app
