"""Request and response bodies of /comparisons."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from api.schemas import OrmModel, StrictRowId
from db.comparisons.models import ComparisonStatus


class ComparisonCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model_id: StrictRowId = Field(description="the model whose flips are counted", examples=[2])
    baseline_model_id: StrictRowId = Field(description="the model it is compared against", examples=[3])


class ComparisonOut(OrmModel):
    id: int = Field(examples=[4])
    model_id: int = Field(examples=[2])
    baseline_model_id: int = Field(examples=[3])
    split_model_id: int = Field(
        description="both models are evaluated on the evaluation split of this version's update job "
        "(the newer version's, unless it was uploaded)",
        examples=[3],
    )
    status: ComparisonStatus = Field(examples=["queued"])
    error: str | None = Field(examples=[None])
    report_id: int | None = Field(examples=[None])
    report_url: str = Field(
        description="where the report is read once the status is succeeded",
        examples=["/models/2/flips?against=3"],
    )
    attempts: int = Field(examples=[0])
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
