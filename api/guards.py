"""ASGI middleware that guards every request before a route sees it.

`BodyGuard` bounds request bodies: a declared Content-Length over the route's limit is a 413
before anything is read, and a streamed (chunked) body is counted and cut off at the limit.
JSON bodies (every body but a form's) are parsed once here, strictly: NaN, Infinity, numbers
that overflow to infinity and nesting deeper than MAX_JSON_DEPTH are a 422 in the API's error
shape, where Python's json module would accept them or overflow the stack.
"""

from __future__ import annotations

import json
import math
from typing import NoReturn

from fastapi import FastAPI, Request
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import error_body
from db.settings import Settings

# Our schemas nest a few levels; anything deeper is not a request to this API.
MAX_JSON_DEPTH = 32
# The form fields, part headers and boundaries around an uploaded file.
MULTIPART_OVERHEAD_BYTES = 64 * 1024
FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")
# Routes that take a file: a multipart body may be as large as max_upload_bytes (plus the form).
UPLOAD_ROUTES = {("POST", "/models")}


class BodyTooLarge(HTTPException):
    """Raised from `receive` when a streamed body passes its limit; rendered as a 413."""

    def __init__(self, limit: int, setting: str) -> None:
        super().__init__(413, f"request body larger than {limit} bytes ({setting})")
        self.limit = limit
        self.setting = setting


def too_large_response(limit: int, setting: str) -> JSONResponse:
    return JSONResponse(
        error_body(f"request body larger than {limit} bytes ({setting})", loc=("body",), error_type="too_large"),
        status_code=413,
        headers={"Connection": "close"},
    )


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} overflows a 64-bit float")
    return value


def _depth(value: object) -> int:
    """Nesting depth of parsed JSON, without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, depth)
            stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


def strict_json_problem(body: bytes) -> str | None:
    """Why `body` is not JSON this API accepts (None if it is)."""
    try:
        value = json.loads(body, parse_constant=_reject_constant, parse_float=_finite_float)
    except RecursionError:
        return f"JSON nested deeper than {MAX_JSON_DEPTH} levels"
    except ValueError as error:  # JSONDecodeError, UnicodeDecodeError, NaN/Infinity, huge integers
        return f"invalid JSON: {error}"
    if _depth(value) > MAX_JSON_DEPTH:
        return f"JSON nested deeper than {MAX_JSON_DEPTH} levels"
    return None


def install_body_guard(app: FastAPI, settings: Settings) -> None:
    """Add the guard, and render a limit passed while a route reads the body as the 413 it is."""
    app.add_middleware(BodyGuard, settings=settings)

    @app.exception_handler(BodyTooLarge)
    async def body_too_large(_request: Request, error: BodyTooLarge) -> JSONResponse:
        return too_large_response(error.limit, error.setting)


class BodyGuard:
    """Size limits on every request body and a strict parse of JSON bodies (see the module)."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings

    def limit_of(self, scope: Scope, content_type: str) -> tuple[int, str]:
        route = (scope["method"], scope["path"].rstrip("/") or "/")
        if route in UPLOAD_ROUTES and content_type.startswith("multipart/form-data"):
            return self.settings.max_upload_bytes + MULTIPART_OVERHEAD_BYTES, "FLIPGUARD_MAX_UPLOAD_BYTES"
        return self.settings.max_json_body_bytes, "FLIPGUARD_MAX_JSON_BODY_BYTES"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        content_type = headers.get("content-type", "").lower()
        limit, setting = self.limit_of(scope, content_type)
        declared = headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            # Refused before a byte of the body is read.
            await too_large_response(limit, setting)(scope, receive, send)
            return

        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit, setting)
            return message

        started = False

        async def tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        downstream: Receive = counted
        if scope["method"] not in ("GET", "HEAD", "OPTIONS") and not content_type.startswith(FORM_TYPES):
            try:
                body = await self._read_all(counted)
            except BodyTooLarge:
                await too_large_response(limit, setting)(scope, receive, send)
                return
            problem = strict_json_problem(body) if body.strip() else None
            if problem:
                response = JSONResponse(error_body(problem, loc=("body",), error_type="json_invalid"), status_code=422)
                await response(scope, receive, send)
                return
            downstream = self._replay(body, receive)
        try:
            await self.app(scope, downstream, tracked)
        except BodyTooLarge as error:
            if started:
                raise
            await too_large_response(error.limit, error.setting)(scope, receive, send)

    @staticmethod
    async def _read_all(receive: Receive) -> bytes:
        chunks = []
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        return b"".join(chunks)

    @staticmethod
    def _replay(body: bytes, receive: Receive) -> Receive:
        """A receive that hands the app the buffered body once, then waits on the client."""
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return replay
