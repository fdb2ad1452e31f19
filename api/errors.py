"""One error body for every 4xx/5xx: {"detail": [{"loc": [...], "msg": ..., "type": ...}]}."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from kombu.exceptions import OperationalError as BrokerUnavailable
from starlette.exceptions import HTTPException as StarletteHTTPException

from db.errors import Conflict, InvalidInput, NotFound, ServiceError

# Where the offending input is: ("body", "dataset_id"), ("query", "limit"), ("body", "items", 3)...
Loc = tuple[str | int, ...]

STATUS_BY_ERROR = {NotFound: 404, Conflict: 409, InvalidInput: 422}


class ApiError(Exception):
    """An HTTP error raised by a view, naming the input it concerns."""

    def __init__(
        self,
        status_code: int,
        message: str,
        *,
        loc: Loc = (),
        error_type: str = "value_error",
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message
        self.loc = loc
        self.error_type = error_type
        self.headers = headers


class Unauthenticated(ApiError):
    """401: no token, or one that is unknown or revoked."""

    def __init__(self, message: str) -> None:
        super().__init__(
            401,
            message,
            loc=("header", "Authorization"),
            error_type="unauthenticated",
            headers={"WWW-Authenticate": "Bearer"},
        )


def error_body(message: str, *, loc: Loc = (), error_type: str) -> dict[str, Any]:
    """The body of every error response."""
    return {"detail": [{"loc": list(loc), "msg": message, "type": error_type}]}


ERROR_RESPONSE_SCHEMA = {
    "description": "Error naming the offending field",
    "content": {
        "application/json": {
            "example": error_body("data set 7 is pending, not ready", loc=("body", "dataset_id"), error_type="conflict")
        }
    },
}


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI documentation of a route's error statuses (400: a body that cannot be parsed)."""
    return {code: ERROR_RESPONSE_SCHEMA for code in codes}


def api_error_response(error: ApiError) -> JSONResponse:
    """The JSON response of an ApiError."""
    return JSONResponse(
        error_body(error.message, loc=error.loc, error_type=error.error_type),
        status_code=error.status_code,
        headers=error.headers,
    )


def service_error_response(error: ServiceError) -> JSONResponse:
    """The JSON response of a domain error, its status chosen by the error's kind."""
    status = next((code for kind, code in STATUS_BY_ERROR.items() if isinstance(error, kind)), 400)
    return JSONResponse(error_body(error.message, loc=error.loc, error_type=error.error_type), status_code=status)


def install_error_handlers(app: FastAPI) -> None:
    """Map service errors and plain HTTP errors onto the common body."""

    @app.exception_handler(ServiceError)
    async def service_error(_request: Request, error: ServiceError) -> JSONResponse:
        return service_error_response(error)

    @app.exception_handler(ApiError)
    async def api_error(_request: Request, error: ApiError) -> JSONResponse:
        return api_error_response(error)

    @app.exception_handler(BrokerUnavailable)
    async def broker_unavailable(_request: Request, error: BrokerUnavailable) -> JSONResponse:
        # The row is stored; the client may retry (an Idempotency-Key makes that safe).
        return JSONResponse(
            error_body(f"the task broker is unreachable: {error}", error_type="broker_unavailable"),
            status_code=503,
        )

    @app.exception_handler(Exception)
    async def internal_error(_request: Request, error: Exception) -> JSONResponse:
        # Anything unforeseen is still the common JSON body (the server logs the traceback).
        return JSONResponse(
            error_body(f"internal error ({type(error).__name__})", error_type="internal_error"), status_code=500
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, error: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(
            error_body(str(error.detail), error_type="http_error"),
            status_code=error.status_code,
            headers=getattr(error, "headers", None),
        )
