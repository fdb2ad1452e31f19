"""Request and response bodies of /models."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from api.schemas import OrmModel
from contracts.methods import UpdateMethod
from db.model_versions.models import ModelStatus

FAMILY_FIELD = Field(
    min_length=1,
    max_length=200,
    pattern=r"^[\w.\-]+$",
    examples=["shoe-classifier"],
    description="The model family (one product's classifier); versions are numbered within it.",
)


class ModelRegisterByUri(BaseModel):
    """JSON form of POST /models: a model file already on the server, inside a data root."""

    model_config = ConfigDict(extra="forbid")

    family: str = FAMILY_FIELD
    uri: str = Field(min_length=1, examples=["/usr/share/datasets/models/shoes-v1.safetensors"])


class ModelRegisterForm(BaseModel):
    """Form fields of the multipart form of POST /models (besides `file`)."""

    model_config = ConfigDict(extra="forbid")

    family: str = FAMILY_FIELD


# The API form of contracts.jobs.GateVerdict (what evaluate_gate returns and the version row
# stores), with examples; tests/api/test_gate_verdict_shape.py keeps their fields the same.
class GateVerdict(BaseModel):
    passed: bool = Field(examples=[True])
    reasons: list[str] = Field(default_factory=list, examples=[["nfr_old_classes 0.0310 > max_nfr 0.02"]])
    nfr_old_classes: float | None = Field(None, examples=[0.012])
    accuracy: float | None = Field(None, examples=[0.91])
    max_nfr: float | None = Field(None, examples=[0.02])
    min_accuracy: float | None = Field(None, examples=[0.85])
    max_accuracy_drop: float | None = Field(None, examples=[0.005])
    max_nfr_ratio: float | None = Field(None, examples=[0.5])
    reference_accuracy: float | None = Field(None, description="the independent retrain's", examples=[0.915])
    reference_nfr_old_classes: float | None = Field(None, description="the independent retrain's", examples=[0.04])
    accuracy_floor: float | None = Field(None, description="reference_accuracy - max_accuracy_drop", examples=[0.91])
    nfr_ceiling: float | None = Field(None, description="max_nfr_ratio x reference_nfr_old_classes", examples=[0.02])


class VersionFiguresOut(BaseModel):
    """A version's headline figures and what they were measured on."""

    accuracy: float | None = Field(
        description="overall accuracy on the samples described by measured_on", examples=[0.91]
    )
    measured_on: str = Field(
        description="the samples and report the figures come from",
        examples=["500 test samples of 10 classes, against model 1"],
    )
    measured_as: str = Field(
        description="`model`: the version's own report against its predecessor; `baseline`: a version "
        "without one (first or uploaded), measured as the baseline of its successor's report (no NFR then)",
        examples=["model"],
    )
    report_model_id: int = Field(description="the model whose report holds these figures", examples=[3])
    baseline_model_id: int = Field(description="the baseline of that report", examples=[1])
    samples: int = Field(examples=[500])
    classes: int = Field(description="how many classes the accuracy is over", examples=[10])
    nfr_old_classes: float | None = Field(None, examples=[0.012])
    nfr_all: float | None = Field(None, examples=[0.006])
    relative_nfr_old_classes: float | None = Field(None, examples=[0.14])


class ModelOut(OrmModel):
    id: int = Field(examples=[3])
    family: str = Field(examples=["shoe-classifier"])
    version: int = Field(examples=[2])
    parent_id: int | None = Field(description="the predecessor version", examples=[1])
    architecture: str = Field(examples=["resnet18"])
    classes: list[str] = Field(examples=[["sandal", "sneaker", "boot"]])
    artifact_uri: str = Field(
        description="path of the weights, relative to the artifact store",
        examples=["models/0c9d6a4e2b7f4f0e9a1d3c5b7e9f1a2b.safetensors"],
    )
    sha256: str = Field(examples=["3b7e1f0c" + "0" * 56])
    status: ModelStatus = Field(examples=["candidate"])
    job_id: int | None = Field(description="the update job that trained it", examples=[12])
    recipe: dict | None = Field(examples=[{"epochs": 30}])
    method: str | None = Field(examples=[UpdateMethod.MPT_KL])
    gate_verdict: GateVerdict | None
    created_at: datetime
    promoted_at: datetime | None
    promotion_reason: str | None = Field(examples=["gate passed (auto_promote)"])
    promoted_by: str | None = Field(
        description="who promoted it: the API token (its id and name), `flipguard (automatic)` for a family's "
        "first version and a gate's auto_promote, `anonymous (authentication off)` without authentication; "
        "null for versions promoted before this was recorded",
        examples=["token 3 'release-bot'"],
    )
    forced: bool = Field(examples=[False])
    figures: VersionFiguresOut | None = Field(
        None,
        description="accuracy and NFR against the predecessor (GET /models and GET /models/{id}); "
        "null when nothing has evaluated the version yet",
    )


class PromoteRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    force: bool = Field(False, strict=True, description="promote although the gate did not pass (needs a reason)")
    reason: str | None = Field(None, max_length=2000, examples=["hotfix for the sandal class"])


class LineageEntry(BaseModel):
    """One version of a lineage, with its figures against its own predecessor."""

    id: int = Field(examples=[3])
    version: int = Field(examples=[2])
    status: ModelStatus
    architecture: str = Field(examples=["resnet18"])
    method: str | None = Field(examples=[UpdateMethod.MPT_KL])
    created_at: datetime
    classes: int = Field(description="how many classes the version knows", examples=[10])
    accuracy: float | None = Field(
        description="overall accuracy on the evaluation split (see accuracy_measured_on)", examples=[0.91]
    )
    accuracy_measured_on: str | None = Field(
        description="the samples the accuracy was measured on; a first or uploaded version is measured as the "
        "baseline of its successor's report, on the samples of its own classes",
        examples=["500 test samples of 10 classes, against model 1"],
    )
    nfr_old_classes: float | None = Field(examples=[0.012])
    nfr_all: float | None = Field(examples=[0.006])
    relative_nfr_old_classes: float | None = Field(examples=[0.14])
