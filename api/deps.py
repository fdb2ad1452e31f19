"""Typed request dependencies: settings, a database session per request, the task queue, and
the scope check of every route."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Annotated

from fastapi import Depends, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from api.errors import ApiError, Unauthenticated
from api.queue import TaskQueue
from api.schemas import DB_INT_MAX
from api.security import check_same_origin
from db.settings import Settings
from db.tokens.models import ApiToken, Scope
from db.tokens.service import authenticate

# The dashboard's login form stores the token in this HttpOnly cookie.
TOKEN_COOKIE = "flipguard_token"
bearer = HTTPBearer(auto_error=False, description="an API token: `python -m api.tokens create`")


def get_settings(request: Request) -> Settings:
    """The settings the app was created with."""
    return request.app.state.settings


def get_session(request: Request) -> Iterator[Session]:
    """A session for this request, closed (and rolled back if uncommitted) afterwards."""
    with request.app.state.sessions() as session:
        yield session


def get_queue(request: Request) -> TaskQueue:
    """The Celery client of this app."""
    return request.app.state.queue


SettingsDep = Annotated[Settings, Depends(get_settings)]
SessionDep = Annotated[Session, Depends(get_session)]
QueueDep = Annotated[TaskQueue, Depends(get_queue)]


def require_scope(scope: Scope) -> Callable:
    """A dependency that admits a request whose token (bearer header, else the dashboard's
    cookie) is live and has `scope`: 401 without a valid token, 403 without the scope."""

    def check(
        request: Request,
        settings: SettingsDep,
        session: SessionDep,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> ApiToken | None:
        if not settings.auth_enabled:
            return None
        token = credentials.credentials if credentials else request.cookies.get(TOKEN_COOKIE)
        if not credentials and token:
            # The cookie is sent by the browser on its own: a write must come from our own pages.
            check_same_origin(request, settings)
        if not token:
            raise Unauthenticated("this route needs an API token: Authorization: Bearer <token>")
        row = authenticate(session, token=token)
        if row is None:
            raise Unauthenticated("the API token is unknown or revoked")
        if scope not in row.scopes:
            raise ApiError(
                403,
                f"the token {row.name!r} lacks the {scope.value!r} scope",
                loc=("header", "Authorization"),
                error_type="forbidden",
            )
        return row

    return check


READ = Depends(require_scope(Scope.READ))
SUBMIT = Depends(require_scope(Scope.SUBMIT))
ADMIN = Depends(require_scope(Scope.ADMIN))
# The checked token as a route parameter, where the route needs to know who calls (None: auth off).
SubmitToken = Annotated[ApiToken | None, SUBMIT]
AdminToken = Annotated[ApiToken | None, ADMIN]


# Row offsets must fit the databases' 64-bit integers at the largest page size.
MAX_PAGE = DB_INT_MAX // 500


class Pagination:
    """`page` (1-based) and `page_size` query parameters of every listing."""

    def __init__(
        self,
        page: Annotated[int, Query(ge=1, le=MAX_PAGE, description="1-based page number", examples=[1])] = 1,
        page_size: Annotated[int, Query(ge=1, le=500, description="rows per page (at most 500)", examples=[50])] = 50,
    ):
        self.page = page
        self.page_size = page_size


PaginationDep = Annotated[Pagination, Depends()]
