"""/dashboard: the internal MLOps pages, rendered on the server from the same db service
functions the REST routers call. Actions (promote, cancel) and live progress go through the
REST endpoints from small same-origin scripts (static/dashboard.js)."""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import FastAPI, Form, Query, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

from api.dashboard import pages_datasets, pages_flips, pages_models, pages_updates
from api.dashboard.site import HERE, login_router, render_page, router
from api.deps import TOKEN_COOKIE, SessionDep, SettingsDep
from api.errors import Unauthenticated, api_error_response, service_error_response
from api.security import check_same_origin
from db.errors import NotFound
from db.tokens.models import Scope
from db.tokens.service import authenticate

# The page modules add their routes to the shared router when imported.
PAGES = (pages_models, pages_updates, pages_flips, pages_datasets)


def install_dashboard(app: FastAPI) -> None:
    """Add the dashboard's pages and its static files (CSS, JS) to the app."""
    app.include_router(login_router)
    app.include_router(router)
    app.mount("/dashboard/static", StaticFiles(directory=HERE / "static"), name="dashboard-static")

    @app.exception_handler(Unauthenticated)
    async def login_first(request: Request, error: Unauthenticated) -> JSONResponse | RedirectResponse:
        # A page opened without a (valid) cookie goes to the login form; the REST API answers 401.
        if request.method == "GET" and request.url.path.startswith("/dashboard/"):
            return RedirectResponse(f"/dashboard/login?{urlencode({'next': request.url.path})}", 303)
        if request.method == "GET" and request.url.path == "/dashboard":
            return RedirectResponse("/dashboard/login", 303)
        return api_error_response(error)

    @app.exception_handler(NotFound)
    async def not_found_page(request: Request, error: NotFound) -> HTMLResponse | JSONResponse:
        # Pages answer a missing row with an HTML page; the REST API keeps its JSON body.
        if request.url.path == "/dashboard" or request.url.path.startswith("/dashboard/"):
            return render_page(request, "error.html", status_code=404, message=error.message)
        return service_error_response(error)


def _safe_next(target: str) -> str:
    """Where to go after logging in: a dashboard path only (no open redirect)."""
    return target if target.startswith("/dashboard") and "//" not in target else "/dashboard"


@login_router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, next: str = Query("/dashboard", max_length=2000)) -> HTMLResponse:
    """The form that stores an API token (with the `read` scope) in an HttpOnly cookie."""
    return render_page(request, "login.html", next=_safe_next(next), message=None)


@login_router.post("/login", response_class=HTMLResponse)
def login(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    token: str = Form(max_length=200),
    next: str = Form("/dashboard", max_length=2000),
) -> Response:  # the form again (HTMLResponse) or a RedirectResponse
    """Check the token and keep it in a cookie that scripts cannot read and other sites never send."""
    check_same_origin(request, settings, required=False)  # no logging a victim in from another site
    row = authenticate(session, token=token.strip())
    if row is None or Scope.READ not in row.scopes:
        return render_page(
            request,
            "login.html",
            status_code=401,
            next=_safe_next(next),
            message="unknown or revoked token, or one without the read scope",
        )
    response = RedirectResponse(_safe_next(next), status_code=303)
    response.set_cookie(
        TOKEN_COOKIE, token.strip(), httponly=True, samesite="strict", secure=request.url.scheme == "https", path="/"
    )
    return response


@login_router.post("/logout")
def logout(request: Request, settings: SettingsDep) -> RedirectResponse:
    """Forget the token cookie."""
    check_same_origin(request, settings, required=False)
    response = RedirectResponse("/dashboard/login", status_code=303)
    response.delete_cookie(TOKEN_COOKIE, path="/")
    return response
