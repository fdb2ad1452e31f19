"""Request and response bodies of /updates.

The recipe and method-parameter bodies (`RecipeIn`, `MethodParamsIn`) are in recipe_schemas.py.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    computed_field,
    create_model,
    field_validator,
)

from api.schemas import OrmModel, StrictRowId
from api.updates.recipe_schemas import MethodParamsIn, RecipeIn
from contracts.architectures import ARCHITECTURES
from contracts.jobs import Gate, JobRequest
from contracts.limits import MAX_CLASS_NAME_CHARS, MAX_CLASSES, duplicates
from contracts.selection import MAX_CANDIDATES, Policy, Selection
from db.updates.models import JobStatus, UpdateMethod

ClassName = Annotated[str, Field(min_length=1, max_length=MAX_CLASS_NAME_CHARS)]


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
                    "method": UpdateMethod.MPT_KL,
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
    method: UpdateMethod = Field(UpdateMethod.MPT_KL, examples=[UpdateMethod.MPT_KL])
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
    method: str = Field(examples=[UpdateMethod.MPT_KL])
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
