"""Request and response bodies of /datasets."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from api.schemas import OrmModel
from db.datasets.models import DatasetFormat, DatasetStatus


class DatasetCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200, pattern=r"^[\w.\-]+$", examples=["fashion-mnist"])
    uri: str = Field(
        min_length=1,
        description="A folder or file inside one of the server's data roots.",
        examples=["/usr/share/datasets/fashion-mnist"],
    )
    format: DatasetFormat = Field(examples=[DatasetFormat.FASHION_MNIST])


class DatasetOut(OrmModel):
    id: int = Field(examples=[1])
    name: str = Field(examples=["fashion-mnist"])
    uri: str = Field(examples=["/usr/share/datasets/fashion-mnist"])
    format: DatasetFormat
    status: DatasetStatus = Field(description="pending until a worker has inspected the files", examples=["ready"])
    error: str | None = Field(examples=[None])
    classes: list[str] | None = Field(examples=[["T-shirt/top", "Trouser", "Pullover"]])
    train_size: int | None = Field(examples=[60000])
    test_size: int | None = Field(examples=[10000])
    image_shape: list[int] | None = Field(
        description="[C, H, W] when every image has one size; null when sizes differ", examples=[[1, 28, 28]]
    )
    image_summary: dict | None = Field(
        description="from the files' headers: channels, smallest and largest [H, W], images per mode",
        examples=[{"channels": 3, "min_size": [20, 31], "max_size": [480, 640], "modes": {"L": 12, "RGB": 880}}],
    )
    digest: str | None = Field(examples=["9f2c41d0a7b3e6f1"])
    inspect_attempts: int = Field(
        description="deliveries of the inspection so far (failed past FLIPGUARD_MAX_INSPECT_DELIVERIES)", examples=[1]
    )
    created_at: datetime


class DatasetSample(BaseModel):
    position: int = Field(description="index among the stored samples", examples=[0])
    label: int = Field(examples=[3])
    label_name: str = Field(examples=["Dress"])
    image_url: str = Field(examples=["/datasets/1/samples/0/image"])


class DatasetSamples(BaseModel):
    """A few test images per class, stored when the worker inspected the data set (none for a
    data set inspected before sample images were kept, or one that failed)."""

    dataset_id: int = Field(examples=[1])
    items: list[DatasetSample]
