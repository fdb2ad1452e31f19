"""Sweeps: several values of docs/METHOD.md's bias `b` (or of any MethodParams field) in one run.

One independent reference serves every trial; the students are trained together by
`mpt.train.train_students` (one data pass, one augmentation and one teacher forward per
batch, shared), each starting from the same initial weights a lone `run_update` would use.
The winner is chosen on the validation split held out of the training data (never on the
evaluation split) by a `contracts.selection.Selection` relative to the reference, and every
trial's validation figures are kept.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import dataclass
from pathlib import Path

from contracts.flips import FlipSummary, Headline
from contracts.methods import UpdateMethod
from contracts.selection import Choice, Figures, Policy, Selection, candidate_label, choose
from mpt.artifacts import LoadedModel
from mpt.data import DataBundle
from mpt.flips import FlipLedger, headline
from mpt.losses import get_method
from mpt.recipe import MethodParams, Recipe
from mpt.reference import IndependentRuns, Progress, ReferenceStore, UpdateData, independent_model, untrained_model
from mpt.train import Teachers, resolve_device, train_students
from mpt.update import UpdateInputs, evaluate, update_setup

# The authors' suggested grid for b (docs/METHOD.md, "Choosing b: the sweep").
DEFAULT_BIASES = (0.0, 1.0, 2.0, 4.0)


@dataclass
class Trial:
    params: MethodParams
    history: list[dict]
    validation: Headline  # headline figures of the trial against the old model on the validation split
    validation_report: FlipSummary  # the full flip report behind them (raw counts, both NFR scopes)
    model: LoadedModel
    label: str = ""  # the swept values, e.g. "bias=1"
    report: FlipSummary | None = None  # on the evaluation split: the winner's, or every trial's with evaluate_all

    @property
    def val_accuracy(self) -> float | None:
        return self.validation["accuracy"]

    @property
    def val_nfr(self) -> float:
        return self.validation["nfr_old_classes"]

    @property
    def figures(self) -> Figures:
        return validation_figures(self.validation)

    def summary(self) -> dict:
        return {
            "label": self.label,
            "params": self.params.to_dict(),
            "validation": self.validation,
            "history": self.history,
        }


@dataclass
class SweepOutcome:
    trials: list[Trial]
    winner: int  # index into trials
    policy: dict  # how the winner was chosen: contracts.selection.Choice as a dict, plus where the bound came from
    data: UpdateData
    reference: LoadedModel
    reference_validation: Headline  # the reference's headline figures on the validation split
    report: FlipSummary  # the winner against the old model on the evaluation split
    ledger: FlipLedger
    reference_report: FlipSummary
    choice: Choice
    selection: Selection
    inputs: UpdateInputs  # the splits as the networks read them (the ledger's thumbnails)

    @property
    def best(self) -> Trial:
        return self.trials[self.winner]

    @property
    def reference_figures(self) -> Figures:
        return validation_figures(self.reference_validation)


def validation_figures(headline: Headline) -> Figures:
    """What a selection reads of a model's headline figures on the validation split."""
    figures = Figures.of_headline(headline)
    if figures is None:
        raise ValueError("a sweep chooses on the validation split, which is empty: set validation_fraction > 0")
    return figures


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

    The `max_accuracy` selection with an absolute bound (contracts.selection.choose): among
    trials whose validation NFR is at most `max_nfr`, the highest validation accuracy (ties:
    the lower NFR, then the earlier trial); when none qualifies (or no bound is given, every
    trial qualifies) the lowest NFR (ties: the higher accuracy, then the earlier trial).
    """
    if not figures:
        raise ValueError("a sweep needs at least one trial")
    selection = Selection(Policy.MAX_ACCURACY, max_nfr=math.inf if max_nfr is None else max_nfr)
    unused = Figures(accuracy=0.0, nfr=0.0)  # an absolute bound does not read the reference
    choice = choose(selection, [Figures(f["accuracy"], f["nfr"]) for f in figures], unused)
    if choice.fallback:
        return choice.winner, "no trial within the NFR bound: lowest NFR"
    return choice.winner, "highest accuracy within the NFR bound"


def run_sweep(
    *,
    bundle: DataBundle,
    base: LoadedModel,
    classes: list[str] | None = None,
    arch: str | None = None,
    method: str = UpdateMethod.MPT_KL,
    params: MethodParams | None = None,
    values: dict[str, list] | None = None,
    recipe: Recipe,
    seed: int,
    max_val_nfr: float | None = None,
    selection: Selection | None = None,
    evaluate_all: bool = False,
    store: ReferenceStore | None = None,
    progress: Progress | None = None,
    device: str = "auto",
    checkpoint_dir: str | Path | None = None,
) -> SweepOutcome:
    """Train one student per point of the grid (default: b in {0, 1, 2, 4}) together and pick one.

    `selection` chooses the winner on the validation split (contracts.selection). Without
    one, the rule is `max_accuracy` bounded by `max_val_nfr` (old-class scope) or, when that
    is None too, by the independent reference's validation NFR, so the winner flips no more
    than a plain retrain. Only the winner is evaluated on the evaluation split, unless
    `evaluate_all` (a study reports every trial; the choice never sees those figures).
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
    if recipe.validation_fraction <= 0:
        raise ValueError("a sweep chooses on the validation split: validation_fraction must be > 0")
    torch_device = resolve_device(device)
    checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir else None
    if checkpoint_dir:
        checkpoint_dir.mkdir(parents=True, exist_ok=True)
    arch, data, setup, inputs = update_setup(
        bundle=bundle, base=base, classes=classes, arch=arch, recipe=recipe, seed=seed, device=torch_device
    )
    if progress.on_data_path:
        progress.on_data_path(inputs.data_path)
    runs = IndependentRuns(data=data, arch=arch, store=store, progress=progress, checkpoint_dir=checkpoint_dir)
    reference = independent_model(setup, runs, phase="reference")
    teachers = Teachers(old=base.net, reference=reference.net)
    if spec.needs_ensemble:
        teachers.ensemble = [
            independent_model(dataclasses.replace(setup, seed=seed + member), runs, phase=f"ensemble-{member}").net
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
    swept = list(values) if values is not None else ["bias"]
    validation = setup.validation  # prepared for the input once: trials are evaluated on it as trained
    assert validation is not None  # update_setup always holds one out
    trials = []
    for student, candidate, history in zip(students, candidates, histories, strict=True):
        model = LoadedModel(student.net.cpu(), student.spec)
        report, _ = evaluate(
            model=model, baseline=base, evaluation=validation, k_old=k_old, device=torch_device, recipe=recipe
        )
        label = candidate_label(candidate.to_dict(), swept)
        trials.append(Trial(candidate, history, headline(report), report, model, label=label))
    reference_val_report, _ = evaluate(
        model=reference, baseline=base, evaluation=validation, k_old=k_old, device=torch_device, recipe=recipe
    )
    reference_validation = headline(reference_val_report)
    if selection is None:
        selection = (
            Selection(Policy.MAX_ACCURACY, max_nfr=max_val_nfr)
            if max_val_nfr is not None
            else Selection(Policy.MAX_ACCURACY, max_nfr_ratio=1.0)
        )
    selection = selection.resolved()
    reference_figures = validation_figures(reference_validation)
    choice = choose(selection, [t.figures for t in trials], reference_figures, [t.label for t in trials])
    policy = {
        **choice.to_dict(),
        "bound_from": (
            "reference validation accuracy minus max_accuracy_drop"
            if selection.policy == Policy.MIN_NFR
            else "max_nfr"
            if selection.max_nfr is not None
            else "reference validation NFR"
            if selection.max_nfr_ratio == 1
            else "max_nfr_ratio x reference validation NFR"
        ),
        "chosen_because": choice.explanation,
        "split": "validation",
    }
    progress.enter("evaluating")
    winner: tuple[FlipSummary, FlipLedger] | None = None
    for index, trial in enumerate(trials):
        if index == choice.winner or evaluate_all:
            report, ledger = evaluate(
                model=trial.model,
                baseline=base,
                evaluation=inputs.evaluation,
                k_old=k_old,
                device=torch_device,
                recipe=recipe,
            )
            trial.report = report
            if index == choice.winner:
                winner = report, ledger
    assert winner is not None, "the chosen trial is always evaluated"
    reference_report, _ = evaluate(
        model=reference, baseline=base, evaluation=inputs.evaluation, k_old=k_old, device=torch_device, recipe=recipe
    )
    return SweepOutcome(
        trials,
        choice.winner,
        policy,
        data,
        reference,
        reference_validation,
        report=winner[0],
        ledger=winner[1],
        reference_report=reference_report,
        choice=choice,
        selection=selection,
        inputs=inputs,
    )
