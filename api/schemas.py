"""Schemas shared by several routers."""

from __future__ import annotations

from typing import Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

Item = TypeVar("Item")


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
