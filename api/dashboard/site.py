"""The dashboard's router, templates (with their filters) and the page renderer every page module uses."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from api.dashboard.charts import percent
from api.deps import READ

HERE = Path(__file__).resolve().parent
templates = Jinja2Templates(directory=HERE / "templates")
templates.env.filters["pct"] = percent
# Relative NFR is a ratio (docs/METHOD.md), shown with three decimals on every page and in the CLI.
templates.env.filters["ratio"] = lambda value: "—" if value is None else f"{value:.3f}"
templates.env.filters["when"] = lambda value: value.strftime("%Y-%m-%d %H:%M:%S") if value else "—"
templates.env.filters["combine_query"] = lambda base, **extra: urlencode({**base, **extra})
templates.env.globals["LIVE_STATUSES"] = ("queued", "running", "evaluating")

router = APIRouter(prefix="/dashboard", include_in_schema=False, dependencies=[READ])
# The login form is the one dashboard page open without a token.
login_router = APIRouter(prefix="/dashboard", include_in_schema=False)


def render_page(request: Request, template: str, status_code: int = 200, **context: object) -> HTMLResponse:
    return templates.TemplateResponse(request, template, context, status_code=status_code)
