"""One run of a study: a timed `run_update`, the cached first version, the run's record."""

from __future__ import annotations

import hashlib
import json
import sys
import time

from contracts.flips import FlipSummary, ScopeFigures
from contracts.methods import UpdateMethod
from mpt.artifacts import LoadedModel
from mpt.console import epoch_progress
from mpt.flips import headline
from mpt.recipe import MethodParams
from mpt.reference import Progress
from mpt.reproduce.study import Study
from mpt.sweep import SweepOutcome, run_sweep
from mpt.update import UpdateOutcome, run_update


def log(message: str) -> None:
    """A timestamped line on stderr."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def flip_counts(report: FlipSummary) -> dict:
    """The raw counts behind the headline ratios, so they can be re-derived and summed."""

    def scope_counts(figures: ScopeFigures) -> dict[str, int]:
        return {
            "samples": figures.samples,
            "negative_flips": figures.negative_flips,
            "positive_flips": figures.positive_flips,
            "old_correct": figures.old_correct,
            "new_correct": figures.new_correct,
        }

    return {
        "scopes": {"all": scope_counts(report.scopes.all), "old_classes": scope_counts(report.scopes.old_classes)},
        "new_class_samples": report.new_class_samples,
        "both_correct": report.both_correct,
        "both_wrong": report.both_wrong,
        "intrusion_flips": report.intrusion_flips,
    }


class _PhaseTimer:
    """Wall time per pipeline phase of one run_update call (reference, ensemble-N, training...)."""

    def __init__(self, study: Study, label: str):
        self.times: dict[str, float] = {}
        self._phase: str | None = None
        self._since = time.perf_counter()
        self._inner = epoch_progress(label, study.quiet)

    def _enter(self, phase: str) -> None:
        self._close()
        self._phase = phase
        if self._inner.on_phase:
            self._inner.on_phase(phase)

    def _close(self) -> None:
        now = time.perf_counter()
        if self._phase is not None:
            self.times[self._phase] = self.times.get(self._phase, 0.0) + now - self._since
        self._since = now

    def progress(self) -> Progress:
        return Progress(on_phase=self._enter, callbacks=self._inner.callbacks)

    def finish(self) -> dict[str, float]:
        self._close()
        return {k: round(v, 2) for k, v in self.times.items()}


def timed_update(
    study: Study,
    *,
    label: str,
    base: LoadedModel | None,
    classes: list[str],
    method: str,
    params: MethodParams,
    seed: int,
) -> tuple[UpdateOutcome, dict]:
    """`run_update` with the study's data, recipe and reference store; also its wall times."""
    timer = _PhaseTimer(study, label)
    started = time.perf_counter()
    outcome = run_update(
        bundle=study.bundle,
        base=base,
        classes=classes,
        arch=study.arch,
        method=method,
        params=params,
        recipe=study.recipe,
        seed=seed,
        store=study.store,
        progress=timer.progress(),
        device=study.device,
        checkpoint_dir=study.checkpoint_dir / label if study.checkpoint_dir else None,
    )
    wall = time.perf_counter() - started
    return outcome, {"wall_s": round(wall, 2), "phase_s": timer.finish()}


def timed_sweep(study: Study, *, label: str, base: LoadedModel, seed: int) -> tuple[SweepOutcome, dict]:
    """mpt-kl at every b of `study.policy_biases`, trained together and chosen by `study.selection`;
    every candidate is also evaluated on the evaluation split (after the choice)."""
    timer = _PhaseTimer(study, label)
    started = time.perf_counter()
    outcome = run_sweep(
        bundle=study.bundle,
        base=base,
        classes=study.classes,
        arch=study.arch,
        method=UpdateMethod.MPT_KL,
        params=study.params,
        values={"bias": list(study.policy_biases)},
        recipe=study.recipe,
        seed=seed,
        selection=study.selection,
        evaluate_all=True,
        store=study.store,
        progress=timer.progress(),
        device=study.device,
        checkpoint_dir=study.checkpoint_dir / label if study.checkpoint_dir else None,
    )
    wall = time.perf_counter() - started
    return outcome, {"wall_s": round(wall, 2), "phase_s": timer.finish()}


def first_version(study: Study, classes: list[str], seed: int) -> tuple[LoadedModel, dict]:
    """A first version (independent on `classes`), cached in the study's model folder."""
    identity = {
        "data": study.bundle.digest,
        "classes": classes,
        "arch": study.arch,
        "recipe": study.recipe.digest(),
        "seed": seed,
        "role": "first-version",
    }
    key = "first-" + hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:32]
    cached = study.store.load(key)
    if cached is not None:
        return cached, {"wall_s": 0.0, "phase_s": {}, "cached": True}
    outcome, timing = timed_update(
        study,
        label=f"old-s{seed}",
        base=None,
        classes=classes,
        method=UpdateMethod.INDEPENDENT,
        params=MethodParams(),
        seed=seed,
    )
    study.store.save(key, outcome.model)
    return outcome.model, {
        **timing,
        "val_accuracy": outcome.history[-1].get("val_accuracy") if outcome.history else None,
    }


def _effective_bias(method: str, params: MethodParams) -> float | None:
    """The b a method trains with: None for the methods without L_Delta."""
    if method.endswith("-nobias"):
        return 0.0
    return params.bias if method.startswith("mpt-") else None


def run_record(
    kind: str, method: str, seed: int, params: MethodParams, outcome: UpdateOutcome, timing: dict, **extra: object
) -> dict:
    """One entry of results.json's runs: what was trained, its flip figures and its timings."""
    return {
        "kind": kind,
        "method": method,
        "seed": seed,
        "bias": _effective_bias(method, params),
        **extra,
        "classes": list(outcome.data.class_map.classes),
        "k_old": outcome.data.class_map.k_old,
        "headline": headline(outcome.checked_report()),
        "counts": flip_counts(outcome.checked_report()),
        "final_val_accuracy": outcome.history[-1].get("val_accuracy") if outcome.history else None,
        **timing,
    }
