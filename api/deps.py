"""Typed request dependencies: settings, a database session per request, the task queue."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Query, Request
from sqlalchemy.orm import Session

from api.queue import TaskQueue
from db.settings import Settings


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


class Pagination:
    """`page` (1-based) and `page_size` query parameters of every listing."""

    def __init__(
        self,
        page: Annotated[int, Query(ge=1, description="1-based page number", examples=[1])] = 1,
        page_size: Annotated[int, Query(ge=1, le=500, description="rows per page (at most 500)", examples=[50])] = 50,
    ):
        self.page = page
        self.page_size = page_size


PaginationDep = Annotated[Pagination, Depends()]
