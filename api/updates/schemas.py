"""Request and response bodies of /updates.

`RecipeIn` and `MethodParamsIn` mirror mpt.recipe.Recipe and MethodParams field by field
(with validation bounds); every field is optional and an omitted one takes the engine's
default, so the defaults live in one place (mpt/recipe.py).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    computed_field,
    create_model,
    field_validator,
    model_validator,
)

from api.schemas import OrmModel, StrictRowId
from contracts.architectures import ARCHITECTURES, IN_CHANNELS
from contracts.jobs import Gate, JobRequest
from contracts.limits import MAX_CLASS_NAME_CHARS, MAX_CLASSES, duplicates
from contracts.selection import MAX_CANDIDATES, Policy, Selection
from db.updates.models import JobStatus, UpdateMethod

ClassName = Annotated[str, Field(min_length=1, max_length=MAX_CLASS_NAME_CHARS)]
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


def _sweep_field(name: str) -> Any:
    """A list of values of one MethodParams field, each bounded as in MethodParamsIn."""
    field = MethodParamsIn.model_fields[name]
    item = next(arg for arg in field.annotation.__args__ if arg is not type(None))  # type: ignore[union-attr]
    values = list[Annotated[item, *field.metadata]]  # type: ignore[valid-type]
    return (
        values | None,
        Field(
            None,
            min_length=1,
            max_length=MAX_CANDIDATES,
            examples=[[0.0, 1.0, 2.0, 4.0]] if name == "bias" else None,
            description=f"values of {name} to train side by side",
        ),
    )


SweepIn = create_model(
    "SweepIn",
    __config__=ConfigDict(extra="forbid"),
    __doc__=(
        "A grid over MethodParams fields: every combination is a candidate, trained together with the "
        f"others; at most {MAX_CANDIDATES} candidates, over fields the method uses."
    ),
    **{name: _sweep_field(name) for name in MethodParamsIn.model_fields},
)


class SelectionIn(BaseModel):
    """How a sweep's winner is chosen on the validation split, relative to the independent retrain."""

    model_config = ConfigDict(extra="forbid")

    policy: Policy = Field(
        Policy.MIN_NFR,
        description="min_nfr: the lowest validation NFR within max_accuracy_drop of the retrain's accuracy; "
        "max_accuracy: the highest validation accuracy within an NFR bound",
    )
    max_accuracy_drop: float | None = Field(
        None,
        strict=True,
        ge=0,
        le=1,
        examples=[0.005],
        description="min_nfr: accuracy at least the retrain's minus this (0.005)",
    )
    max_nfr: float | None = Field(
        None, strict=True, ge=0, le=1, examples=[0.02], description="max_accuracy: validation NFR at most this"
    )
    max_nfr_ratio: float | None = Field(
        None,
        strict=True,
        ge=0,
        le=100,
        examples=[1.0],
        description="max_accuracy: NFR at most this times the retrain's (1)",
    )

    def to_selection(self) -> Selection:
        return Selection(**self.model_dump())


class GateIn(BaseModel):
    """When a trained version may replace production."""

    model_config = ConfigDict(extra="forbid")

    max_nfr: float | None = Field(
        None, strict=True, ge=0, le=1, examples=[0.02], description="highest NFR on old-class samples that passes"
    )
    min_accuracy: float | None = Field(
        None, strict=True, ge=0, le=1, examples=[0.85], description="lowest overall accuracy that passes"
    )
    max_accuracy_drop: float | None = Field(
        None,
        strict=True,
        ge=0,
        le=1,
        examples=[0.005],
        description="accuracy at least the independent retrain's (same job, evaluation split) minus this",
    )
    max_nfr_ratio: float | None = Field(
        None,
        strict=True,
        ge=0,
        le=100,
        examples=[0.5],
        description="NFR on old-class samples at most this times the independent retrain's",
    )
    auto_promote: bool = Field(False, strict=True, description="promote at once when the gate passes")


class UpdateCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "base_model_id": 1,
                    "dataset_id": 2,
                    "method": "mpt-kl",
                    "method_params": {"bias": 4.0},
                    "recipe": {"epochs": 30},
                    "gate": {"max_nfr": 0.02, "auto_promote": True},
                    "seed": 0,
                }
            ]
        },
    )

    base_model_id: StrictRowId | None = Field(
        None,
        description="the deployed version to update; omitted: train a first version",
        examples=[1],
    )
    family: str | None = Field(
        None,
        min_length=1,
        max_length=200,
        pattern=r"^[\w.\-]+$",
        description="required without a base model",
        examples=["shoe-classifier"],
    )
    architecture: str | None = Field(
        None,
        min_length=1,
        max_length=100,
        pattern=r"^[\w.\-]+$",
        description=f"one of {', '.join(ARCHITECTURES)}; default: the base model's",
        examples=["resnet18"],
    )
    dataset_id: StrictRowId = Field(description="a data set in status ready", examples=[2])
    classes: list[ClassName] | None = Field(
        None,
        min_length=1,
        max_length=MAX_CLASSES,
        description=f"training classes by name (at most {MAX_CLASSES}, no duplicates); omitted: all of the data set",
        examples=[["sandal", "sneaker", "boot", "slipper"]],
    )
    method: UpdateMethod = Field(UpdateMethod.MPT_KL, examples=["mpt-kl"])
    method_params: MethodParamsIn = Field(default_factory=MethodParamsIn)
    recipe: RecipeIn = Field(default_factory=RecipeIn)
    gate: GateIn = Field(default_factory=GateIn)
    seed: int = Field(0, strict=True, ge=0, le=2**31 - 1, examples=[0])
    sweep: SweepIn | None = Field(
        None,
        description="train several candidates together and register the one `selection` picks; omitted "
        "with an MPT method and no method_params.bias: bias in {0, 1, 2, 4}",
        examples=[{"bias": [0.0, 1.0, 2.0, 4.0]}],
    )
    selection: SelectionIn | None = Field(
        None,
        description="how the sweep's winner is chosen (default: min_nfr within max_accuracy_drop 0.005)",
    )

    @field_validator("architecture")
    @classmethod
    def _known_architecture(cls, architecture: str | None) -> str | None:
        if architecture is not None and architecture not in ARCHITECTURES:
            raise ValueError(f"unknown architecture {architecture!r}; known: {', '.join(ARCHITECTURES)}")
        return architecture

    @field_validator("classes")
    @classmethod
    def _classes_once(cls, classes: list[str] | None) -> list[str] | None:
        twice = duplicates(classes or [])
        if twice:
            raise ValueError(f"classes listed twice: {twice[:20]}")
        return classes

    def to_job_request(self) -> JobRequest:
        """The typed request create_job takes; recipe and method fields left out stay out."""
        return JobRequest(
            base_model_id=self.base_model_id,
            family=self.family,
            architecture=self.architecture,
            dataset_id=self.dataset_id,
            classes=tuple(self.classes) if self.classes is not None else None,
            method=self.method,
            method_params=self.method_params.model_dump(exclude_none=True),
            recipe=self.recipe.model_dump(exclude_none=True),
            gate=Gate(**self.gate.model_dump()),
            seed=self.seed,
            sweep=self.sweep.model_dump(exclude_none=True) if self.sweep is not None else None,
            selection=self.selection.to_selection() if self.selection is not None else None,
        )


class JobEventOut(OrmModel):
    id: int
    phase: str = Field(examples=["training"])
    epoch: int | None = Field(examples=[3])
    metrics: dict = Field(examples=[{"train_loss": 0.82, "val_accuracy": 0.88, "val_nfr": 0.013, "lr": 0.09}])
    created_at: datetime


class UpdateOut(OrmModel):
    id: int = Field(examples=[12])
    base_model_id: int | None = Field(examples=[1])
    family: str = Field(examples=["shoe-classifier"])
    architecture: str = Field(examples=["resnet18"])
    dataset_id: int = Field(examples=[2])
    classes: list[str] | None
    method: str = Field(examples=["mpt-kl"])
    method_params: dict
    recipe: dict
    gate: dict
    seed: int
    sweep: dict | None = Field(None, description="the grid, defaults applied", examples=[{"bias": [0.0, 1.0]}])
    selection: dict | None = Field(
        None, description="the selection policy, defaults applied", examples=[{"policy": "min_nfr"}]
    )
    choice: dict | None = Field(
        None,
        description="which candidate the selection chose and why (winner, rule, bound, qualified, fallback, "
        "explanation, reference_validation)",
    )
    status: JobStatus = Field(examples=["running"])
    phase: str | None = Field(examples=["training"])
    progress: float = Field(ge=0, le=1, examples=[0.42])
    epoch: int | None = Field(examples=[12])
    epochs: int | None = Field(examples=[30])
    attempts: int = Field(examples=[1])
    worker_id: str | None = Field(examples=["gpu0@host-a"])
    heartbeat_at: datetime | None
    cancel_requested: bool
    error: str | None
    data_path: str | None = Field(
        description="how the worker fed the images: resident (held on the device) or streaming "
        "(decoded per batch); null until chosen",
        examples=["resident"],
    )
    result_model_id: int | None = Field(examples=[None])
    reference_id: int | None = Field(
        validation_alias=AliasChoices("reference_id", "reference_model_id"),
        description="the independent reference this job trained or reused: an entry of the reference cache "
        "(an independently trained model on the same data, classes, recipe and seed, shared by jobs), "
        "not a model version id; its weights are at reference_weights_url",
        examples=[None],
    )
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None

    @computed_field(  # type: ignore[prop-decorator]
        description="download of the independent reference's safetensors weights (null until the job has one)",
        examples=["/updates/12/reference/weights"],
    )
    @property
    def reference_weights_url(self) -> str | None:
        return f"/updates/{self.id}/reference/weights" if self.reference_id is not None else None


class CandidateOut(OrmModel):
    index: int = Field(description="position in the grid, from 0", examples=[1])
    label: str = Field(examples=["bias=1"])
    params: dict = Field(description="the swept fields' values", examples=[{"bias": 1.0}])
    validation: dict = Field(
        description="headline figures against the base model on the validation split",
        examples=[{"accuracy": 0.884, "nfr_old_classes": 0.021}],
    )
    history: list[dict] = Field(description="per-epoch metrics (train_loss, val_accuracy, val_nfr, lr)")
    chosen: bool = Field(description="the winner, the only candidate registered", examples=[True])


class UpdateDetail(UpdateOut):
    events: list[JobEventOut] = Field(description="per-epoch metrics, oldest first")
    candidates: list[CandidateOut] = Field(
        default_factory=list, description="a sweep's candidates in grid order (once the job has succeeded)"
    )
