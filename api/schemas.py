"""Schemas shared by several routers."""

from __future__ import annotations

from typing import Annotated, Generic, TypeVar

from annotated_types import Interval
from pydantic import BaseModel, ConfigDict, Field, Strict

Item = TypeVar("Item")
# The integer range both databases store (SQLite INTEGER, PostgreSQL bigint): a larger id in a
# path or query is a 422, not a driver overflow.
DB_INT_MAX = 2**63 - 1
RowId = Annotated[int, Interval(ge=0, le=DB_INT_MAX)]
# An id in a JSON body: an integer, never a boolean, float or string that looks like one.
StrictRowId = Annotated[int, Strict(), Interval(ge=0, le=DB_INT_MAX)]


class OrmModel(BaseModel):
    """A response schema read from SQLAlchemy rows."""

    model_config = ConfigDict(from_attributes=True)


class Page(BaseModel, Generic[Item]):
    """One page of a listing."""

    model_config = ConfigDict(from_attributes=True)

    items: list[Item]
    total: int = Field(description="rows matching the filters, over all pages")
    page: int = Field(ge=1, examples=[1])
    page_size: int = Field(ge=1, examples=[50])
