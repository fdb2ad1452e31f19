"""Sweeps: several values of docs/METHOD.md's bias `b` (or of any MethodParams field) in one run.

One independent reference serves every trial; the students are trained together by
`mpt.train.train_students` (one data pass, one augmentation and one teacher forward per
batch, shared), each starting from the same initial weights a lone `run_update` would use.
The winner is chosen on the validation split held out of the training data (never on the
evaluation split), and every trial's validation figures are kept.
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass
from pathlib import Path

from contracts.flips import FlipSummary
from mpt.artifacts import LoadedModel
from mpt.data import DataBundle
from mpt.flips import FlipLedger, headline
from mpt.losses import get_method
from mpt.recipe import MethodParams, Recipe
from mpt.train import Teachers, resolve_device, train_students
from mpt.update import (
    Progress,
    ReferenceStore,
    UpdateData,
    evaluate,
    independent_model,
    untrained_model,
    update_setup,
)

# The authors' suggested grid for b (docs/METHOD.md, "Choosing b: the sweep").
DEFAULT_BIASES = (0.0, 1.0, 2.0, 4.0)


@dataclass
class Trial:
    params: MethodParams
    history: list[dict]
    validation: dict  # headline figures of the trial against the old model on the validation split
    validation_report: FlipSummary  # the full flip report behind them (raw counts, both NFR scopes)
    model: LoadedModel

    @property
    def val_accuracy(self) -> float:
        return self.validation["accuracy"]

    @property
    def val_nfr(self) -> float:
        return self.validation["nfr_old_classes"]

    def summary(self) -> dict:
        return {"params": self.params.to_dict(), "validation": self.validation, "history": self.history}


@dataclass
class SweepOutcome:
    trials: list[Trial]
    winner: int  # index into trials
    policy: dict  # how the winner was chosen, with the NFR bound used
    data: UpdateData
    reference: LoadedModel
    reference_validation: dict  # the reference's headline figures on the validation split
    report: FlipSummary | None = None  # the winner against the old model on the evaluation split
    ledger: FlipLedger | None = None
    reference_report: FlipSummary | None = None

    @property
    def best(self) -> Trial:
        return self.trials[self.winner]


def grid(base: MethodParams, values: dict[str, list]) -> list[MethodParams]:
    """Every combination of `values` (MethodParams field -> candidate values) applied to `base`."""
    if not values:
        return [base]
    MethodParams.from_dict({name: candidates[0] for name, candidates in values.items() if candidates})  # unknown names
    if any(not candidates for candidates in values.values()):
        raise ValueError("every swept field needs at least one value")
    names = list(values)
    return [
        dataclasses.replace(base, **dict(zip(names, combo, strict=True)))
        for combo in itertools.product(*values.values())
    ]


def choose_winner(figures: list[dict], *, max_nfr: float | None) -> tuple[int, str]:
    """Index of the winning trial and why, from each trial's validation `accuracy` and `nfr`.

    Policy: among trials whose validation NFR is at most `max_nfr`, the highest validation
    accuracy (ties: the lower NFR, then the earlier trial); when none qualifies (or no bound
    is given, every trial qualifies) the lowest NFR (ties: the higher accuracy, then the
    earlier trial).
    """
    if not figures:
        raise ValueError("a sweep needs at least one trial")
    eligible = [i for i, f in enumerate(figures) if max_nfr is None or f["nfr"] <= max_nfr]
    if eligible:
        return min(
            eligible, key=lambda i: (-figures[i]["accuracy"], figures[i]["nfr"], i)
        ), "highest accuracy within the NFR bound"
    return min(
        range(len(figures)), key=lambda i: (figures[i]["nfr"], -figures[i]["accuracy"], i)
    ), "no trial within the NFR bound: lowest NFR"


def run_sweep(
    *,
    bundle: DataBundle,
    base: LoadedModel,
    classes: list[str] | None = None,
    arch: str | None = None,
    method: str = "mpt-kl",
    params: MethodParams | None = None,
    values: dict[str, list] | None = None,
    recipe: Recipe,
    seed: int,
    max_val_nfr: float | None = None,
    store: ReferenceStore | None = None,
    progress: Progress | None = None,
    device: str = "auto",
    checkpoint_dir: str | Path | None = None,
) -> SweepOutcome:
    """Train one student per point of the grid (default: b in {0, 1, 2, 4}) together and pick one.

    `max_val_nfr` bounds the winner's validation NFR (old-class scope); None uses the
    independent reference's validation NFR, so the winner flips no more than a plain retrain.
    Phases: `reference` (when not cached), `sweep`, `evaluating`.
    """
    progress = progress or Progress()
    params = params or MethodParams()
    candidates = grid(params, values if values is not None else {"bias": list(DEFAULT_BIASES)})
    spec = get_method(method)
    if base is None:
        raise ValueError("a sweep updates a base model; train a first version with `mpt train`")
    if spec.needs_ensemble and len({p.elodi_ensemble_size for p in candidates}) > 1:
        raise ValueError("a sweep shares one ensemble: elodi_ensemble_size cannot vary")
    torch_device = resolve_device(device)
    checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir else None
    if checkpoint_dir:
        checkpoint_dir.mkdir(parents=True, exist_ok=True)
    arch, data, setup, inputs = update_setup(
        bundle=bundle, base=base, classes=classes, arch=arch, recipe=recipe, seed=seed, device=torch_device
    )
    if progress.on_data_path:
        progress.on_data_path(inputs.data_path)
    common = dict(data=data, arch=arch, store=store, progress=progress, checkpoint_dir=checkpoint_dir)
    reference = independent_model(setup, phase="reference", **common)
    teachers = Teachers(old=base.net, reference=reference.net)
    if spec.needs_ensemble:
        teachers.ensemble = [
            independent_model(dataclasses.replace(setup, seed=seed + member), phase=f"ensemble-{member}", **common).net
            for member in range(1, candidates[0].elodi_ensemble_size + 1)
        ]

    # Every student starts from the weights a lone run with this seed would start from.
    warm_from = base.net if recipe.warm_start else None
    students = [
        untrained_model(arch, data, inputs.shape, setup.mean, setup.std, seed=seed, warm_from=warm_from)
        for _ in candidates
    ]
    sweep_setup = dataclasses.replace(
        setup,
        teachers=teachers,
        callbacks=progress.enter("sweep"),
        checkpoint_path=checkpoint_dir / "sweep.ckpt" if checkpoint_dir else None,
    )
    histories = train_students(
        sweep_setup, nets=[student.net for student in students], methods=[method] * len(candidates), params=candidates
    )

    k_old = data.class_map.k_old
    validation = setup.validation  # prepared for the input once: trials are evaluated on it as trained
    assert validation is not None  # update_setup always holds one out
    trials = []
    for student, candidate, history in zip(students, candidates, histories, strict=True):
        model = LoadedModel(student.net.cpu(), student.spec)
        report, _ = evaluate(
            model=model, baseline=base, evaluation=validation, k_old=k_old, device=torch_device, recipe=recipe
        )
        trials.append(Trial(candidate, history, headline(report), report, model))
    reference_val_report, _ = evaluate(
        model=reference, baseline=base, evaluation=validation, k_old=k_old, device=torch_device, recipe=recipe
    )
    reference_validation = headline(reference_val_report)
    bound = reference_validation["nfr_old_classes"] if max_val_nfr is None else max_val_nfr
    winner, reason = choose_winner([{"accuracy": t.val_accuracy, "nfr": t.val_nfr} for t in trials], max_nfr=bound)
    policy = {
        "rule": "highest validation accuracy with validation NFR (old classes) <= bound, else lowest NFR",
        "bound": bound,
        "bound_from": "reference validation NFR" if max_val_nfr is None else "max_val_nfr",
        "chosen_because": reason,
        "split": "validation",
    }
    outcome = SweepOutcome(trials, winner, policy, data, reference, reference_validation)
    progress.enter("evaluating")
    outcome.report, outcome.ledger = evaluate(
        model=outcome.best.model,
        baseline=base,
        evaluation=inputs.evaluation,
        k_old=k_old,
        device=torch_device,
        recipe=recipe,
    )
    outcome.reference_report, _ = evaluate(
        model=reference, baseline=base, evaluation=inputs.evaluation, k_old=k_old, device=torch_device, recipe=recipe
    )
    return outcome
