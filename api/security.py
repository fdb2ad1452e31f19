"""What a browser needs to be told: cross-site requests that ride on the dashboard's cookie are
refused, and every response carries a Content-Security-Policy, X-Frame-Options and
X-Content-Type-Options.

CSRF: a state-changing request (POST, PUT, PATCH, DELETE) authenticated by the cookie must come
from the API's own origin, by its Origin header (or, without one, its Referer). The own origin
is `FLIPGUARD_PUBLIC_URL`'s when set (behind a proxy that terminates TLS), else the request's
scheme and Host: a cross-site page cannot choose the Host its victim's browser sends. Requests
with a bearer token carry no ambient credential and are not checked.
"""

from __future__ import annotations

import secrets
from urllib.parse import urlsplit

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import ApiError
from db.settings import Settings

STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})

# The dashboard: its own script and stylesheet only; no inline script and no inline style
# (progress bars and charts are SVG shapes whose attributes carry the figures).
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'; object-src 'none'"
)
SECURITY_HEADERS = {
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


class CrossSiteRequest(ApiError):
    def __init__(self, message: str):
        super().__init__(403, message, loc=("header", "Origin"), error_type="csrf")


def _origin_of(url: str) -> str | None:
    parts = urlsplit(url)
    if not parts.scheme or not parts.netloc:
        return None
    return f"{parts.scheme}://{parts.netloc}".lower()


def own_origin(request: Request, settings: Settings) -> str:
    """The origin the API is served from, as a browser names it in Origin headers."""
    if settings.public_url:
        return _origin_of(settings.public_url) or ""
    return f"{request.url.scheme}://{request.headers.get('host', '')}".lower()


def check_same_origin(request: Request, settings: Settings, *, required: bool = True) -> None:
    """Refuse a state-changing request whose Origin (else Referer) is not the API's own; one
    with neither is refused when `required` (a cookie-authenticated request)."""
    if request.method not in STATE_CHANGING:
        return
    origin = request.headers.get("origin")
    source = "Origin"
    if origin is None and request.headers.get("referer"):
        origin, source = _origin_of(request.headers["referer"]) or "null", "Referer"
    if origin is None:
        if required:
            raise CrossSiteRequest(
                "a request authenticated by the dashboard cookie must carry an Origin or Referer header"
            )
        return
    expected = own_origin(request, settings)
    if origin.lower() != expected:
        raise CrossSiteRequest(f"cross-site request refused: {source} {origin} is not {expected}")


class SecurityHeaders:
    """Adds the browser security headers to every response (errors and 500s included); a
    response that sets its own Content-Security-Policy (the API docs) keeps it."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
                for name, value in SECURITY_HEADERS.items():
                    headers[name] = value
            await send(message)

        await self.app(scope, receive, with_headers)


def _with_nonce(page: HTMLResponse, *, extra_sources: str) -> HTMLResponse:
    """FastAPI's docs page with its inline script nonce'd and a policy that names its CDN."""
    nonce = secrets.token_urlsafe(16)
    html = bytes(page.body).decode().replace("<script>", f'<script nonce="{nonce}">')
    policy = (
        f"default-src 'self'; script-src 'self' https://cdn.jsdelivr.net 'nonce-{nonce}'; "
        f"style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net https://fonts.googleapis.com; "
        f"font-src 'self' https://fonts.gstatic.com; img-src 'self' data: {extra_sources}; "
        "worker-src 'self' blob:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
    )
    return HTMLResponse(html, headers={"Content-Security-Policy": policy})


def install_docs(app: FastAPI) -> None:
    """/docs and /redoc (created with docs_url=None, redoc_url=None) under a nonce'd policy."""

    @app.get("/docs", include_in_schema=False)
    def swagger_ui() -> HTMLResponse:
        page = get_swagger_ui_html(openapi_url=app.openapi_url or "/openapi.json", title=f"{app.title} - Swagger UI")
        return _with_nonce(page, extra_sources="https://fastapi.tiangolo.com")

    @app.get("/redoc", include_in_schema=False)
    def redoc() -> HTMLResponse:
        page = get_redoc_html(openapi_url=app.openapi_url or "/openapi.json", title=f"{app.title} - ReDoc")
        return _with_nonce(page, extra_sources="https://fastapi.tiangolo.com https://cdn.redoc.ly")
