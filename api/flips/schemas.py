"""Response bodies of /models/{id}/flips: report figures and ledger rows."""

from __future__ import annotations

from pydantic import BaseModel, Field

from api.schemas import OrmModel, Page
from contracts.flips import FlipSummary
from db.flips.models import FlipKind


class ScopeFigures(BaseModel):
    """NFR and friends over one set of samples, with the raw counts they are ratios of."""

    samples: int = Field(examples=[5000])
    negative_flips: int = Field(examples=[61])
    positive_flips: int = Field(examples=[240])
    old_correct: int = Field(description="samples the baseline got right", examples=[4410])
    new_correct: int = Field(description="samples the model got right", examples=[4589])
    nfr: float = Field(description="negative_flips / samples", examples=[0.0122])
    pfr: float = Field(examples=[0.048])
    relative_nfr: float = Field(description="nfr / ((1 - ER_old) * ER_new)", examples=[0.168])
    old_accuracy: float | None = Field(examples=[0.882])
    new_accuracy: float | None = Field(examples=[0.918])


class Accuracy(BaseModel):
    overall: float | None = Field(examples=[0.91])
    old_classes: float | None = Field(examples=[0.918])
    new_classes: float | None = Field(examples=[0.87])


class ClassFigures(BaseModel):
    index: int
    name: str
    is_new: bool
    samples: int
    old_correct: int
    new_correct: int
    negative_flips: int
    positive_flips: int
    intrusion_flips: int
    nfr: float | None
    old_accuracy: float | None
    new_accuracy: float | None


class Transition(BaseModel):
    kind: FlipKind
    old_prediction: int
    new_prediction: int
    count: int
    intrusion: bool


class FlipFigures(BaseModel):
    """The figures of one model against the baseline (docs/METHOD.md's metrics, both scopes)."""

    scopes: dict[str, ScopeFigures] = Field(
        description="`old_classes`: samples of the baseline's classes (the paper's scope); "
        "`all`: every evaluation sample"
    )
    accuracy: Accuracy
    btc: float | None = Field(description="backward trust compatibility", examples=[0.986])
    bec: float | None = Field(description="backward error compatibility", examples=[0.52])
    both_correct: int
    both_wrong: int
    intrusion_flips: int = Field(description="negative flips into a new class", examples=[7])
    per_class: list[ClassFigures]
    transitions: list[Transition]

    @classmethod
    def from_summary(cls, summary: FlipSummary) -> FlipFigures:
        """The figures of a stored flip report summary."""
        # from_attributes: the scopes, classes and transitions are read from the summary's dataclasses.
        return cls.model_validate(
            {
                "scopes": {"all": summary.scopes.all, "old_classes": summary.scopes.old_classes},
                "accuracy": Accuracy(
                    overall=summary.scopes.all.new_accuracy,
                    old_classes=summary.scopes.old_classes.new_accuracy,
                    new_classes=summary.new_class_accuracy,
                ),
                "btc": summary.btc,
                "bec": summary.bec,
                "both_correct": summary.both_correct,
                "both_wrong": summary.both_wrong,
                "intrusion_flips": summary.intrusion_flips,
                "per_class": summary.per_class,
                "transitions": summary.transitions,
            },
            from_attributes=True,
        )


class FlipSampleOut(OrmModel):
    sample_index: int = Field(description="index in the evaluation split", examples=[1234])
    label: int = Field(examples=[3])
    label_name: str = Field(examples=["boot"])
    old_prediction: int = Field(examples=[3])
    old_prediction_name: str = Field(examples=["boot"])
    new_prediction: int = Field(examples=[5])
    new_prediction_name: str = Field(examples=["slipper"])
    old_confidence: float = Field(description="baseline's probability of the true label", examples=[0.81])
    new_confidence: float = Field(description="model's probability of the true label", examples=[0.22])
    kind: FlipKind
    is_intrusion: bool = Field(examples=[True])
    image_url: str | None = Field(examples=["/models/3/flips/1234/image"])


class FlipReportOut(BaseModel):
    report_id: int
    model_id: int = Field(examples=[3])
    baseline_model_id: int = Field(examples=[1])
    split: str = Field(examples=["test"])
    k_old: int = Field(description="classes the baseline knows (the first k_old)", examples=[5])
    classes: list[str]
    figures: FlipFigures
    reference: FlipFigures | None = Field(
        description="the same figures for the independently trained reference model against "
        "the same baseline; null when the job trained none"
    )
    samples: Page[FlipSampleOut]
