"""The flip report of docs/METHOD.md as typed values: the engine computes it (`mpt.flips`), the
service stores it (`db.flips`) and shows it (`api`), all reading the same attributes.

`FlipSummary.to_dict()` is the JSON form the engine's CLI writes, the database stores and the
API returns; `FlipSummary.from_dict()` reads it back.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, TypedDict, TypeVar

# A bool, or a bool tensor when the engine applies a rule to a whole split at once.
_Flags = TypeVar("_Flags")


class FlipKind(enum.StrEnum):
    NEGATIVE = "negative"  # the old model was right, the new one is wrong
    POSITIVE = "positive"  # the old model was wrong, the new one is right


def is_intrusion(*, negative: _Flags, new_prediction: Any, k_old: int) -> _Flags:
    """Whether a flip is a negative flip into a class the old model never had (elementwise on tensors)."""
    # docs/METHOD.md's layout: the old classes keep indices 0..k_old-1, the new ones come after.
    return negative & (new_prediction >= k_old)


class LedgerRow(TypedDict):
    """One flipped sample of a ledger as JSON: mpt.flips.FlipLedger.rows() makes it, db.flips stores it."""

    sample_index: int  # its index in the evaluation split
    label: int  # its true class, in the new index space
    old_prediction: int
    new_prediction: int
    old_confidence: float  # the old model's probability of the true class (0 for a class it never had)
    new_confidence: float
    kind: str  # a FlipKind value


@dataclass(frozen=True)
class ScopeFigures:
    """NFR, PFR, relative NFR and the raw counts they are ratios of, over one set of samples."""

    samples: int
    negative_flips: int
    positive_flips: int
    old_correct: int
    new_correct: int
    nfr: float
    pfr: float
    relative_nfr: float  # 0 when its denominator (1 - ER_old) * ER_new is 0
    old_accuracy: float | None  # None over no samples
    new_accuracy: float | None


@dataclass(frozen=True)
class FlipScopes:
    """The figures over every evaluation sample and over the samples of the old classes only."""

    all: ScopeFigures
    old_classes: ScopeFigures  # the paper's scope


@dataclass(frozen=True)
class ClassFigures:
    """The figures of the samples of one true class."""

    index: int
    name: str
    is_new: bool
    samples: int
    old_correct: int
    new_correct: int
    negative_flips: int
    positive_flips: int
    intrusion_flips: int
    nfr: float | None  # None for a class without samples
    old_accuracy: float | None
    new_accuracy: float | None


@dataclass(frozen=True)
class Transition:
    """How many flips of one kind went from one predicted class to another."""

    kind: FlipKind
    old_prediction: int
    new_prediction: int
    count: int
    intrusion: bool


class Headline(TypedDict):
    """FlipSummary.headline(): the figures a person reads first, as JSON (a sweep stores one per
    candidate on the validation split). Each is the FlipSummary property of the same name."""

    nfr_old_classes: float
    nfr_all: float
    relative_nfr_old_classes: float
    relative_nfr_all: float
    pfr_all: float
    negative_flips: int
    accuracy: float | None
    accuracy_old_classes: float | None
    accuracy_new_classes: float | None
    old_model_accuracy_old_classes: float | None
    btc: float | None
    bec: float | None
    intrusion_flips: int


@dataclass(frozen=True)
class FlipSummary:
    """An updated model against its predecessor on one labelled evaluation split."""

    classes: tuple[str, ...]  # the new index space: the old model's k_old classes first
    k_old: int
    scopes: FlipScopes
    new_class_accuracy: float | None  # None without new-class samples
    new_class_samples: int
    both_correct: int
    both_wrong: int
    btc: float | None  # backward trust compatibility; None when the old model got nothing right
    bec: float | None  # backward error compatibility; None when the old model got nothing wrong
    intrusion_flips: int
    per_class: tuple[ClassFigures, ...]
    transitions: tuple[Transition, ...]

    # The headline figures, each defined here once: Headline's keys, the report row's columns
    # (db.flips) and the gate (db.model_versions.gate) read these.
    @property
    def nfr_old_classes(self) -> float:
        return self.scopes.old_classes.nfr

    @property
    def nfr_all(self) -> float:
        return self.scopes.all.nfr

    @property
    def relative_nfr_old_classes(self) -> float:
        return self.scopes.old_classes.relative_nfr

    @property
    def relative_nfr_all(self) -> float:
        return self.scopes.all.relative_nfr

    @property
    def pfr_all(self) -> float:
        return self.scopes.all.pfr

    @property
    def negative_flips(self) -> int:
        return self.scopes.all.negative_flips

    @property
    def samples(self) -> int:
        return self.scopes.all.samples

    @property
    def accuracy(self) -> float | None:
        """The new model's accuracy over every sample."""
        return self.scopes.all.new_accuracy

    @property
    def accuracy_old_classes(self) -> float | None:
        return self.scopes.old_classes.new_accuracy

    @property
    def accuracy_new_classes(self) -> float | None:
        return self.new_class_accuracy

    @property
    def old_model_accuracy_old_classes(self) -> float | None:
        return self.scopes.old_classes.old_accuracy

    def headline(self) -> Headline:
        """The figures a person reads first, flattened."""
        return Headline(
            nfr_old_classes=self.nfr_old_classes,
            nfr_all=self.nfr_all,
            relative_nfr_old_classes=self.relative_nfr_old_classes,
            relative_nfr_all=self.relative_nfr_all,
            pfr_all=self.pfr_all,
            negative_flips=self.negative_flips,
            accuracy=self.accuracy,
            accuracy_old_classes=self.accuracy_old_classes,
            accuracy_new_classes=self.accuracy_new_classes,
            old_model_accuracy_old_classes=self.old_model_accuracy_old_classes,
            btc=self.btc,
            bec=self.bec,
            intrusion_flips=self.intrusion_flips,
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (lists and plain strings), keys in field order."""
        return asdict(self, dict_factory=_json_object)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FlipSummary:
        """The summary of a `to_dict()` form; a missing key raises (KeyError, or TypeError inside a figure)."""
        scopes = data["scopes"]
        return cls(
            classes=tuple(data["classes"]),
            k_old=data["k_old"],
            scopes=FlipScopes(all=ScopeFigures(**scopes["all"]), old_classes=ScopeFigures(**scopes["old_classes"])),
            new_class_accuracy=data["new_class_accuracy"],
            new_class_samples=data["new_class_samples"],
            both_correct=data["both_correct"],
            both_wrong=data["both_wrong"],
            btc=data["btc"],
            bec=data["bec"],
            intrusion_flips=data["intrusion_flips"],
            per_class=tuple(ClassFigures(**row) for row in data["per_class"]),
            transitions=tuple(Transition(**{**row, "kind": FlipKind(row["kind"])}) for row in data["transitions"]),
        )


def _json_object(fields: list[tuple[str, Any]]) -> dict[str, Any]:
    """`asdict`'s dict factory: tuples become lists and enums their values, as JSON reads back."""
    return {
        key: list(value) if isinstance(value, tuple) else value.value if isinstance(value, enum.Enum) else value
        for key, value in fields
    }
