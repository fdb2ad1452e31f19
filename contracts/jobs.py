"""An update job's typed shapes at its two ends: the request the API validated (with the gate
it is judged by), and the model the worker trained, handed to the database to register."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TypedDict

from contracts.flips import Headline
from contracts.methods import UpdateMethod
from contracts.selection import Choice, Selection


@dataclass(frozen=True)
class Gate:
    """When a trained version may replace its family's production version."""

    # Highest NFR on old-class samples that passes; None: not checked.
    max_nfr: float | None = None
    # Lowest overall accuracy that passes; None: not checked.
    min_accuracy: float | None = None
    # Relative to the independent retrain of the same job, on the evaluation split:
    # accuracy at least the retrain's minus this; None: not checked.
    max_accuracy_drop: float | None = None
    # NFR on old-class samples at most this times the retrain's; None: not checked.
    max_nfr_ratio: float | None = None
    # Promote at once when the gate passes.
    auto_promote: bool = False


class GateVerdict(TypedDict):
    """A gate's verdict on a trained version (db.model_versions.gate.evaluate_gate), as stored
    with the version and served by the API (api.model_versions.schemas.GateVerdict)."""

    passed: bool
    reasons: list[str]  # every rule that failed, and every one that could not be checked
    nfr_old_classes: float | None  # the version's figures against its base model
    accuracy: float | None
    max_nfr: float | None  # the gate's bounds
    min_accuracy: float | None
    max_accuracy_drop: float | None
    max_nfr_ratio: float | None
    reference_nfr_old_classes: float | None  # the independent retrain's figures
    reference_accuracy: float | None
    accuracy_floor: float | None  # reference_accuracy - max_accuracy_drop
    nfr_ceiling: float | None  # max_nfr_ratio x reference_nfr_old_classes


@dataclass(frozen=True)
class JobRequest:
    """An update job as submitted: what to train, from which model and data, and its gate.

    `method_params` and `recipe` hold only the fields the
    caller set, named as in mpt.recipe's MethodParams and Recipe; the rest take the engine's
    defaults.
    """

    dataset_id: int
    method: UpdateMethod
    # The deployed version to update; None trains a first version of `family`.
    base_model_id: int | None = None
    # Required without a base model; with one, it must be the base model's (None: take it).
    family: str | None = None
    # Required without a base model; with one, None takes the base model's.
    architecture: str | None = None
    # Training classes by name; None means every class of the data set.
    classes: tuple[str, ...] | None = None
    method_params: dict[str, Any] = field(default_factory=dict)
    recipe: dict[str, Any] = field(default_factory=dict)
    gate: Gate = field(default_factory=Gate)
    seed: int = 0
    # A grid over MethodParams fields ({"bias": [0, 1, 2, 4]}); None: one model, or the
    # service's default sweep for an MPT method that names no b (contracts.selection.resolve).
    sweep: dict[str, list[Any]] | None = None
    # How the sweep's winner is chosen; None: the default (min_nfr within 0.005).
    selection: Selection | None = None


@dataclass(frozen=True)
class RegisteredModel:
    """A model a worker trained and saved to the artifact store, for its job's completion to register."""

    artifact_uri: str
    sha256: str
    architecture: str
    classes: tuple[str, ...]
    # The recipe it was trained with, every field resolved (mpt.recipe.Recipe.to_dict()).
    recipe: dict[str, Any]
    method: UpdateMethod


@dataclass(frozen=True)
class Candidate:
    """One trained candidate of a sweep, as its job stores it."""

    index: int
    label: str  # its swept values, "bias=1"
    params: dict[str, Any]  # the swept fields' values
    validation: Headline  # against the base model on the validation split
    history: list[dict[str, Any]]  # per-epoch metrics


@dataclass(frozen=True)
class SweepResult:
    """Every candidate of a sweep and the choice among them, registered with the winner."""

    candidates: tuple[Candidate, ...]
    choice: Choice
    reference_validation: Headline  # the independent retrain's, on the validation split
