"""Offset pagination shared by every listing."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

Row = TypeVar("Row")


@dataclass
class Page(Generic[Row]):
    items: list[Row]
    total: int
    page: int
    page_size: int


def paginate(session: Session, statement: Select, *, page: int, page_size: int) -> Page:
    """One page (1-based) of an ordered select of ORM rows, with the total row count."""
    total = session.scalar(select(func.count()).select_from(statement.order_by(None).subquery()))
    items = session.scalars(statement.limit(page_size).offset((page - 1) * page_size)).all()
    return Page(items=list(items), total=total or 0, page=page, page_size=page_size)
