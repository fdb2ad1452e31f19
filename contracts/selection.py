"""Sweeps of an update job and the rules that choose one of its candidates.

Torch-free, so that one piece of code validates a request (the API, through db), chooses the
winner (the engine, on the validation split) and lets a reader re-check a stored choice.

A *sweep* is a grid over MethodParams fields (`{"bias": [0, 1, 2, 4]}`); every point of it is a
*candidate*, trained together with the others. A *selection* is the rule that picks one
candidate from its validation figures, relative to the independent retrain (the reference)
that every update trains anyway:

- `min_nfr`: the lowest validation NFR (old classes) among the candidates whose validation
  accuracy is at least the reference's minus `max_accuracy_drop` (default 0.005). When none
  qualifies, the fallback is the highest validation accuracy: the smallest accuracy cost.
- `max_accuracy`: the highest validation accuracy among the candidates whose validation NFR
  is at most `max_nfr` (absolute) or `max_nfr_ratio` times the reference's (default ratio 1:
  no more flips than the plain retrain). When none qualifies, the fallback is the lowest NFR.

Ties go to the lower NFR (min_nfr: the higher accuracy), then to the earlier candidate.
"""

from __future__ import annotations

import enum
import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from contracts.methods import METHOD_PARAM_FIELDS, PARAMS_USED, UpdateMethod

# A sweep trains every candidate at once: on a GPU four packed students cost about 2.2 runs,
# on a CPU each one costs nearly a run. Beyond this many, split the question.
MAX_CANDIDATES = 8
# What a job of an MPT method that names no b trains (docs/METHOD.md, "Choosing b in the service").
DEFAULT_SWEEP: dict[str, tuple[float, ...]] = {"bias": (0.0, 1.0, 2.0, 4.0)}
DEFAULT_MAX_ACCURACY_DROP = 0.005
DEFAULT_MAX_NFR_RATIO = 1.0
# Slack when comparing a figure with a bound: both are ratios of counts in float64.
TOLERANCE = 1e-9


class SweepError(ValueError):
    """A sweep or selection that cannot run; `field` is the request path it concerns."""

    def __init__(self, field: tuple[str, ...], message: str):
        super().__init__(message)
        self.field = field
        self.message = message


class Policy(enum.StrEnum):
    MIN_NFR = "min_nfr"
    MAX_ACCURACY = "max_accuracy"


@dataclass(frozen=True)
class Selection:
    """How a sweep's winner is chosen; `resolved()` fills the policy's defaults."""

    policy: Policy = Policy.MIN_NFR
    # min_nfr: a candidate's validation accuracy must be >= the reference's minus this.
    max_accuracy_drop: float | None = None
    # max_accuracy: a candidate's validation NFR must be <= this (absolute) ...
    max_nfr: float | None = None
    # ... or <= this times the reference's validation NFR (one of the two; default ratio 1).
    max_nfr_ratio: float | None = None

    def resolved(self) -> Selection:
        """The same rule with its defaults filled in; SweepError for bounds of the other policy."""
        policy = Policy(self.policy)
        if policy == Policy.MIN_NFR:
            for name in ("max_nfr", "max_nfr_ratio"):
                if getattr(self, name) is not None:
                    raise SweepError(
                        ("selection", name),
                        f"{name} bounds the max_accuracy policy; min_nfr is bounded by max_accuracy_drop",
                    )
            drop = DEFAULT_MAX_ACCURACY_DROP if self.max_accuracy_drop is None else float(self.max_accuracy_drop)
            return Selection(policy, max_accuracy_drop=drop)
        if self.max_accuracy_drop is not None:
            raise SweepError(
                ("selection", "max_accuracy_drop"),
                "max_accuracy_drop bounds the min_nfr policy; max_accuracy is bounded by max_nfr or max_nfr_ratio",
            )
        if self.max_nfr is not None and self.max_nfr_ratio is not None:
            raise SweepError(
                ("selection", "max_nfr_ratio"), "give max_nfr (absolute) or max_nfr_ratio (x the reference's), not both"
            )
        if self.max_nfr is None and self.max_nfr_ratio is None:
            return Selection(policy, max_nfr_ratio=DEFAULT_MAX_NFR_RATIO)
        return Selection(
            policy,
            max_nfr=None if self.max_nfr is None else float(self.max_nfr),
            max_nfr_ratio=None if self.max_nfr_ratio is None else float(self.max_nfr_ratio),
        )

    def describe(self) -> str:
        """The rule in words (of a resolved selection)."""
        if self.policy == Policy.MIN_NFR:
            return (
                f"min_nfr: the lowest validation NFR among candidates whose validation accuracy is at least "
                f"the independent retrain's minus {_points(self.max_accuracy_drop or 0.0)}"
            )
        bound = (
            f"at most {_pct(self.max_nfr)}"
            if self.max_nfr is not None
            else f"at most {self.max_nfr_ratio or 0.0:g} x the independent retrain's"
        )
        return f"max_accuracy: the highest validation accuracy among candidates whose validation NFR is {bound}"

    def to_dict(self) -> dict[str, Any]:
        return {k: (v.value if isinstance(v, Policy) else v) for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None) -> Selection:
        values = dict(values or {})
        unknown = sorted(set(values) - {"policy", "max_accuracy_drop", "max_nfr", "max_nfr_ratio"})
        if unknown:
            raise SweepError(("selection", unknown[0]), f"unknown selection field {unknown[0]!r}")
        if "policy" in values:
            try:
                values["policy"] = Policy(values["policy"])
            except ValueError:
                raise SweepError(
                    ("selection", "policy"), f"unknown policy {values['policy']!r}; choose min_nfr or max_accuracy"
                ) from None
        return cls(**values)


@dataclass(frozen=True)
class Figures:
    """A model's figures on the validation split: overall accuracy and NFR on the old classes."""

    accuracy: float
    nfr: float

    @classmethod
    def of_headline(cls, headline: Mapping[str, Any]) -> Figures | None:
        """The figures of a contracts.flips.Headline, or of its stored JSON (a missing key reads as
        None); None when either is None (an empty split)."""
        accuracy, nfr = headline.get("accuracy"), headline.get("nfr_old_classes")
        if accuracy is None or nfr is None:
            return None
        return cls(accuracy=float(accuracy), nfr=float(nfr))


@dataclass(frozen=True)
class Choice:
    """Which candidate a selection chose and why, in figures and in words."""

    winner: int
    policy: str
    rule: str  # the selection in words
    bound: float  # min_nfr: the accuracy floor; max_accuracy: the NFR ceiling
    qualified: list[int]  # the candidates within the bound
    fallback: bool  # no candidate was within the bound
    explanation: str  # why the winner won, for a person

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _pct(value: float) -> str:
    return f"{100 * value:.2f}%"


def _points(value: float) -> str:
    return f"{100 * value:.2f} point{'s' if value != 0.01 else ''} ({value:g})"


def candidate_label(params: Mapping[str, Any], swept: Sequence[str]) -> str:
    """'bias=1' / 'bias=1, tau=2': a candidate named by its swept values."""
    return ", ".join(f"{name}={params[name]:g}" for name in swept)


def choose(
    selection: Selection, candidates: Sequence[Figures], reference: Figures, labels: Sequence[str] | None = None
) -> Choice:
    """Apply a selection (resolved here) to the candidates' validation figures."""
    selection = selection.resolved()
    if not candidates:
        raise ValueError("a sweep needs at least one candidate")
    labels = list(labels) if labels is not None else [f"candidate {i}" for i in range(len(candidates))]
    count = len(candidates)

    def fig(i: int) -> str:
        return f"{labels[i]} (accuracy {_pct(candidates[i].accuracy)}, NFR {_pct(candidates[i].nfr)})"

    ref_text = f"the independent retrain: accuracy {_pct(reference.accuracy)}, NFR {_pct(reference.nfr)}"
    if selection.policy == Policy.MIN_NFR:
        drop = selection.max_accuracy_drop or 0.0
        floor = reference.accuracy - drop
        qualified = [i for i, c in enumerate(candidates) if c.accuracy >= floor - TOLERANCE]
        if qualified:
            winner = min(qualified, key=lambda i: (candidates[i].nfr, -candidates[i].accuracy, i))
            why = (
                f"{len(qualified)} of {count} candidates keep validation accuracy >= {_pct(floor)} "
                f"({ref_text}, minus {drop:g}); of those {fig(winner)} has the lowest NFR."
            )
        else:
            winner = min(range(count), key=lambda i: (-candidates[i].accuracy, candidates[i].nfr, i))
            why = (
                f"No candidate keeps validation accuracy >= {_pct(floor)} ({ref_text}, minus {drop:g}); "
                f"fallback: the highest accuracy, the smallest cost, {fig(winner)}."
            )
        bound = floor
    else:
        if selection.max_nfr is not None:
            ceiling = selection.max_nfr
            bound_text = f"<= {_pct(ceiling)} (max_nfr)"
        else:
            ratio = selection.max_nfr_ratio if selection.max_nfr_ratio is not None else DEFAULT_MAX_NFR_RATIO
            ceiling = ratio * reference.nfr
            bound_text = f"<= {_pct(ceiling)} ({ratio:g} x {ref_text})"
        qualified = [i for i, c in enumerate(candidates) if c.nfr <= ceiling + TOLERANCE]
        if qualified:
            winner = min(qualified, key=lambda i: (-candidates[i].accuracy, candidates[i].nfr, i))
            why = (
                f"{len(qualified)} of {count} candidates have validation NFR {bound_text}; "
                f"of those {fig(winner)} has the highest accuracy."
            )
        else:
            winner = min(range(count), key=lambda i: (candidates[i].nfr, -candidates[i].accuracy, i))
            why = f"No candidate has validation NFR {bound_text}; fallback: the lowest NFR, {fig(winner)}."
        bound = ceiling
    return Choice(
        winner=winner,
        policy=Policy(selection.policy).value,
        rule=selection.describe(),
        bound=bound,
        qualified=qualified,
        fallback=not qualified,
        explanation=why,
    )


def candidate_params(values: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """Every point of the grid, in order (the last field varies fastest)."""
    names = list(values)
    return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*values.values())]


def check_sweep(
    values: Mapping[str, Sequence[Any]], *, method: str, fixed_params: Mapping[str, Any], has_base: bool
) -> dict[str, list]:
    """The sweep as it will run, or SweepError naming the field that stops it."""
    if not has_base:
        raise SweepError(("sweep",), "a sweep updates a base model; a first version trains with 'independent' alone")
    if not values:
        raise SweepError(("sweep",), "a sweep needs at least one MethodParams field with its values")
    used = PARAMS_USED[UpdateMethod(method)]
    total = 1
    checked: dict[str, list] = {}
    for name, candidates in values.items():
        if name not in METHOD_PARAM_FIELDS:
            raise SweepError(("sweep", name), f"unknown MethodParams field {name!r}")
        candidates = list(candidates)
        if not candidates:
            raise SweepError(("sweep", name), f"{name} needs at least one value")
        if any(isinstance(v, float) and not math.isfinite(v) for v in candidates):
            raise SweepError(("sweep", name), f"{name} values must be finite")
        repeated = sorted({v for v in candidates if candidates.count(v) > 1})
        if repeated:
            raise SweepError(("sweep", name), f"{name} lists {', '.join(f'{v:g}' for v in repeated)} more than once")
        if name not in used:
            uses = ", ".join(sorted(used)) or "no MethodParams field"
            raise SweepError(
                ("sweep", name),
                f"method {method} does not use {name}, so every candidate would be the same (it uses {uses})",
            )
        if name in fixed_params:
            raise SweepError(("sweep", name), f"{name} is both fixed in method_params and swept; give it in one place")
        if name == "elodi_ensemble_size" and len(candidates) > 1:
            raise SweepError(("sweep", name), "the candidates share one ensemble: elodi_ensemble_size cannot vary")
        total *= len(candidates)
        if total > MAX_CANDIDATES:
            sizes = " x ".join(f"{n}: {len(v)}" for n, v in [*checked.items(), (name, candidates)])
            raise SweepError(
                ("sweep", name),
                f"the sweep would train {total} candidates ({sizes}), at most {MAX_CANDIDATES} are allowed: "
                f"{name} takes it past the bound",
            )
        checked[name] = candidates
    return checked


def resolve(
    *,
    method: str,
    fixed_params: Mapping[str, Any],
    sweep: Mapping[str, Sequence[Any]] | None,
    selection: Selection | None,
    has_base: bool,
) -> tuple[dict[str, list] | None, Selection | None]:
    """The sweep and selection a job runs with, defaults applied; (None, None) for a single run.

    A job with a base model whose method uses b and that names neither b nor a sweep gets
    DEFAULT_SWEEP; a sweep without a selection gets min_nfr within DEFAULT_MAX_ACCURACY_DROP.
    """
    if sweep is None:
        if has_base and "bias" in PARAMS_USED[UpdateMethod(method)] and "bias" not in fixed_params:
            sweep = {name: list(values) for name, values in DEFAULT_SWEEP.items()}
        elif selection is not None:
            why = (
                "method_params.bias fixes b"
                if "bias" in fixed_params
                else f"method {method} trains one model"
                if has_base
                else "a first version trains one model"
            )
            raise SweepError(("selection",), f"a selection chooses among a sweep's candidates, and {why}; add a sweep")
        else:
            return None, None
    checked = check_sweep(sweep, method=method, fixed_params=fixed_params, has_base=has_base)
    return checked, (selection or Selection()).resolved()
