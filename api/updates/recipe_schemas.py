"""The training recipe and method parameters of a POST /updates body.

`RecipeIn` and `MethodParamsIn` mirror mpt.recipe.Recipe and MethodParams field by field
(with validation bounds); every field is optional and an omitted one takes the engine's
default, so the defaults live in one place (mpt/recipe.py).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from contracts.architectures import IN_CHANNELS

CropFraction = Annotated[float, Field(strict=True, gt=0, le=1)]
CropAspect = Annotated[float, Field(strict=True, gt=0, le=100)]


class RecipeIn(BaseModel):
    """How the model is trained; omitted fields take mpt.recipe.Recipe's defaults."""

    model_config = ConfigDict(extra="forbid")

    epochs: int | None = Field(None, strict=True, ge=1, le=1000, examples=[100])
    batch_size: int | None = Field(None, strict=True, ge=1, le=8192, examples=[128])
    lr: float | None = Field(None, strict=True, gt=0, le=10, examples=[0.1])
    momentum: float | None = Field(None, strict=True, ge=0, lt=1, examples=[0.9])
    weight_decay: float | None = Field(None, strict=True, ge=0, le=1, examples=[5e-4])
    image_size: int | None = Field(
        None,
        strict=True,
        ge=8,
        le=1024,
        examples=[224],
        description="input side in pixels: images are resized to cover it and centre-cropped; "
        "omitted: the data's own size (an update keeps its base model's)",
    )
    train_crop: Literal["pad", "random_resized"] | None = Field(
        None, examples=["pad"], description="pad: random crop after zero padding; random_resized: RandomResizedCrop"
    )
    crop_padding: int | None = Field(None, strict=True, ge=0, le=64, examples=[4])
    crop_scale: tuple[CropFraction, CropFraction] | None = Field(
        None, examples=[[0.08, 1.0]], description="random_resized: share of the area, (low, high)"
    )
    crop_ratio: tuple[CropAspect, CropAspect] | None = Field(
        None, examples=[[0.75, 1.3333]], description="random_resized: aspect ratio, (low, high)"
    )
    horizontal_flip: bool | None = Field(None, strict=True, examples=[True])
    mean: list[Annotated[float, Field(strict=True, ge=0, le=1)]] | None = Field(
        None,
        min_length=1,
        max_length=3,
        examples=[[0.4914, 0.4822, 0.4465]],
        description="per-channel normalisation mean (0..1, one per image channel, with std); "
        "omitted: the base model's, or measured on the training images",
    )
    std: list[Annotated[float, Field(strict=True, gt=0, le=10)]] | None = Field(
        None,
        min_length=1,
        max_length=3,
        validate_default=True,
        examples=[[0.2023, 0.1994, 0.2010]],
        description="per-channel normalisation std (> 0, one per image channel, with mean); "
        "omitted: the base model's, or measured on the training images",
    )
    validation_fraction: float | None = Field(None, strict=True, ge=0, lt=1, examples=[0.1])
    train_samples_per_class: int | None = Field(None, strict=True, ge=1, examples=[500])
    eval_samples_per_class: int | None = Field(None, strict=True, ge=1, examples=[100])
    poll_every_steps: int | None = Field(None, strict=True, ge=1, le=10000, examples=[20])
    bf16_on_cuda: bool | None = Field(None, strict=True, examples=[True])
    channels_last_on_cuda: bool | None = Field(None, strict=True, examples=[True])
    warm_start: bool | None = Field(
        None,
        strict=True,
        examples=[False],
        description="start the student from the base model's weights (new classes' head rows freshly initialised)",
    )
    data_path: Literal["auto", "resident", "streaming"] | None = Field(
        None, examples=["auto"], description="auto: resident when the fitted set fits in memory, else streaming"
    )
    resident_memory_fraction: float | None = Field(None, strict=True, gt=0, le=1, examples=[0.5])
    decode_workers: int | None = Field(None, strict=True, ge=0, le=64, examples=[8])
    ledger_thumbnail_side: int | None = Field(None, strict=True, ge=8, le=512, examples=[64])
    cuda_graphs: bool | None = Field(None, strict=True, examples=[False])
    pack_students: Literal["auto", "on", "off"] | None = Field(None, examples=["auto"])

    @model_validator(mode="after")
    def _ranges_ordered(self) -> RecipeIn:
        for name in ("crop_scale", "crop_ratio"):
            value = getattr(self, name)
            if value is not None and value[0] > value[1]:
                raise ValueError(f"{name} must be (low, high) with low <= high")
        return self

    @field_validator("std")
    @classmethod
    def _mean_and_std_together(cls, std: list[float] | None, info: ValidationInfo) -> list[float] | None:
        mean = info.data.get("mean")
        if "mean" not in info.data:  # mean itself was refused
            return std
        if (mean is None) != (std is None):
            raise ValueError("give mean and std together (one value per image channel each)")
        if std is not None and mean is not None and (len(std) != len(mean) or len(std) not in IN_CHANNELS):
            raise ValueError(f"mean and std need one value per image channel ({' or '.join(map(str, IN_CHANNELS))})")
        return std


class MethodParamsIn(BaseModel):
    """How the update's loss is shaped (docs/METHOD.md); omitted fields take mpt's defaults."""

    model_config = ConfigDict(extra="forbid")

    bias: float | None = Field(
        None, strict=True, ge=0, le=100, examples=[4.0], description="b: added to new-class logits in the training CE"
    )
    alpha: float | None = Field(None, strict=True, ge=0, le=100, examples=[1.0])
    beta: float | None = Field(None, strict=True, ge=0, le=100, examples=[5.0])
    tau: float | None = Field(None, strict=True, gt=0, le=100, examples=[5.0])
    lm_weight: float | None = Field(None, strict=True, ge=0, le=100, examples=[0.4])
    elodi_start_epoch: int | None = Field(None, strict=True, ge=0, le=1000, examples=[5])
    elodi_old_weight: float | None = Field(None, strict=True, ge=0, le=100, examples=[0.6])
    elodi_ensemble_weight: float | None = Field(None, strict=True, ge=0, le=100, examples=[0.4])
    elodi_ensemble_size: int | None = Field(None, strict=True, ge=1, le=16, examples=[2])
    elodi_topk: int | None = Field(None, strict=True, ge=1, le=10000, examples=[10])
