"""The update pipeline shared by the CLI and the worker: prepare the data in the update's
index space, get (or train) the independent reference, train the student, and evaluate it
and the reference against the old model."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from contracts.flips import FlipSummary
from contracts.methods import UpdateMethod
from mpt.artifacts import LoadedModel
from mpt.data import DataBundle, DataError, FittedImages, ImageFiles, ImageSet, build_class_map
from mpt.feed import Prepared, choose_data_path, decode_workers, measure_channel_stats, prepare, prepare_for_input
from mpt.flips import FlipLedger, flip_report
from mpt.losses import get_method
from mpt.recipe import MethodParams, Recipe
from mpt.reference import IndependentRuns, Progress, ReferenceStore, UpdateData, independent_model, train_fresh
from mpt.train import Teachers, TrainingSetup, predict, resolve_device


@dataclass
class UpdateInputs:
    """How the networks are fed: the input shape (C, H, W) every split is fitted to, the data
    path (mpt.feed), and the evaluation split so prepared (the training setup holds the
    training and validation splits)."""

    shape: tuple[int, int, int]
    data_path: str
    evaluation: Prepared


def prepare_data(
    bundle: DataBundle, *, old_classes: list[str] | None, classes: list[str] | None, recipe: Recipe, seed: int
) -> UpdateData:
    """Select the update's classes, put them in the class-map order and split off validation."""
    class_map = build_class_map(list(old_classes or []), list(classes or bundle.classes))
    names = list(class_map.classes)
    train_set = bundle.train.select_classes(names).limit_per_class(recipe.train_samples_per_class, seed=seed)
    train_set, validation = train_set.split(recipe.validation_fraction, seed=seed)
    evaluation = bundle.test.select_classes(names).limit_per_class(recipe.eval_samples_per_class, seed=seed)
    return UpdateData(class_map, train_set, validation, evaluation, bundle.digest)


@dataclass
class UpdateOutcome:
    model: LoadedModel
    history: list[dict]
    data: UpdateData
    inputs: UpdateInputs
    reference: LoadedModel | None = None
    report: FlipSummary | None = None
    ledger: FlipLedger | None = None
    reference_report: FlipSummary | None = None

    def checked_report(self) -> FlipSummary:
        """`report`, which every update with a base model has (a first version has none)."""
        if self.report is None:
            raise ValueError("a first version (no base model) has no flip report")
        return self.report

    def checked_ledger(self) -> FlipLedger:
        """`ledger`, which every update with a base model has (a first version has none)."""
        if self.ledger is None:
            raise ValueError("a first version (no base model) has no flip ledger")
        return self.ledger

    def checked_reference_report(self) -> FlipSummary:
        """`reference_report`, which every update with a base model has (a first version has none)."""
        if self.reference_report is None:
            raise ValueError("a first version (no base model) has no reference flip report")
        return self.reference_report


def evaluate(
    *,
    model: LoadedModel,
    baseline: LoadedModel,
    evaluation: ImageSet | ImageFiles | FittedImages,
    k_old: int,
    device: torch.device | None = None,
    recipe: Recipe | None = None,
) -> tuple[FlipSummary, FlipLedger]:
    """The flip report of `model` against `baseline` on a split in `model`'s index space."""
    device = resolve_device() if device is None else device
    new_logits, old_logits = model_logits([model, baseline], evaluation, device=device, recipe=recipe or Recipe())
    return flip_report(
        labels=evaluation.labels,
        old_logits=old_logits[:, :k_old],
        new_logits=new_logits,
        classes=list(model.spec.classes),
        k_old=k_old,
    )


def update_setup(
    *,
    bundle: DataBundle,
    base: LoadedModel | None,
    classes: list[str] | None,
    arch: str | None,
    recipe: Recipe,
    seed: int,
    device: torch.device,
) -> tuple[str, UpdateData, TrainingSetup, UpdateInputs]:
    """The architecture, the data, the training setup (no teachers yet) and the networks'
    inputs of an update or first version."""
    arch = arch or (base.spec.arch if base else None)
    if arch is None:
        raise ValueError("a first version needs an architecture")
    if recipe.warm_start and base is not None and arch != base.spec.arch:
        raise ValueError(f"warm_start needs the base model's architecture ({base.spec.arch}), not {arch}")
    data = prepare_data(
        bundle, old_classes=list(base.spec.classes) if base else None, classes=classes, recipe=recipe, seed=seed
    )
    shape = model_input(data, base, recipe)
    path = choose_data_path(
        recipe.data_path,
        train=data.train,
        others=[data.validation, data.evaluation],
        shape=shape,
        device=device,
        memory_fraction=recipe.resident_memory_fraction,
    )
    workers = decode_workers(recipe)
    train_set, validation, evaluation = (
        prepare(part, shape, path=path, workers=workers) for part in (data.train, data.validation, data.evaluation)
    )
    # An update keeps the family's normalisation so the old model sees the inputs it knows.
    mean: Sequence[float]
    std: Sequence[float]
    if recipe.mean is not None:
        if recipe.std is None:
            raise ValueError("a recipe that sets mean sets std too")
        mean, std = recipe.mean, recipe.std
    elif base is not None:
        mean, std = base.spec.mean, base.spec.std
    else:
        mean, std = measure_channel_stats(train_set, workers=workers)
    setup = TrainingSetup(
        train_set=train_set,
        new_mask=data.class_map.new_mask(),
        mean=mean,
        std=std,
        recipe=recipe,
        seed=seed,
        validation=validation,
        device=device,
    )
    return arch, data, setup, UpdateInputs(shape, path, evaluation)


def model_logits(
    models: list[LoadedModel],
    evaluation: ImageSet | ImageFiles | FittedImages,
    *,
    device: torch.device,
    recipe: Recipe,
) -> list[torch.Tensor]:
    """Each model's float32 logits on a split, which each sees fitted to its own input (its
    file's image size and channels; prepared once per input shape, on the recipe's data path)."""
    prepared: dict[tuple[int, int, int], Prepared] = {}
    logits = []
    for loaded in models:
        shape = loaded.spec.input_shape
        if shape not in prepared:
            prepared[shape] = prepare_for_input(evaluation, shape, recipe=recipe, device=device)
        logits.append(
            predict(
                loaded.net.to(device),
                prepared[shape],
                mean=loaded.spec.mean,
                std=loaded.spec.std,
                device=device,
                workers=decode_workers(recipe),
            )
        )
    return logits


def model_input(data: UpdateData, base: LoadedModel | None, recipe: Recipe) -> tuple[int, int, int]:
    """(C, H, W) of the update's network: the base model's (an update keeps its family's
    input), else the data's channels at the recipe's image_size or at the images' own size."""
    if base is not None:
        if recipe.image_size is not None and (recipe.image_size, recipe.image_size) != tuple(base.spec.image_size):
            raise ValueError(
                f"an update keeps its base model's image size {tuple(base.spec.image_size)}; "
                f"the recipe asks for {recipe.image_size}"
            )
        return base.spec.input_shape
    if recipe.image_size is not None:
        return (data.train.channels, recipe.image_size, recipe.image_size)
    own = data.train.shape
    if own is None or own != data.evaluation.shape:
        raise DataError("the data set's images differ in size: set the recipe's image_size to fit them to one size")
    return own


def run_update(
    *,
    bundle: DataBundle,
    base: LoadedModel | None,
    classes: list[str] | None,
    arch: str | None,
    method: str,
    params: MethodParams,
    recipe: Recipe,
    seed: int,
    store: ReferenceStore | None = None,
    progress: Progress | None = None,
    device: str = "auto",
    checkpoint_dir: str | Path | None = None,
) -> UpdateOutcome:
    """Train a new version (from `base`, or a first version when `base` is None) and evaluate it.

    Phases: `reference` (and `ensemble-N` for ELODI) when the method needs them and no cached
    one fits, `training`, `evaluating`.
    """
    progress = progress or Progress()
    torch_device = resolve_device(device)
    checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir else None
    if checkpoint_dir:
        checkpoint_dir.mkdir(parents=True, exist_ok=True)
    method_spec = get_method(method)
    if base is None and method != UpdateMethod.INDEPENDENT:
        raise ValueError(f"a first version (no base model) trains with 'independent', not {method!r}")
    arch, data, setup, inputs = update_setup(
        bundle=bundle, base=base, classes=classes, arch=arch, recipe=recipe, seed=seed, device=torch_device
    )
    if progress.on_data_path:
        progress.on_data_path(inputs.data_path)
    runs = IndependentRuns(data=data, arch=arch, store=store, progress=progress, checkpoint_dir=checkpoint_dir)
    teachers = Teachers(old=base.net if base else None)
    reference: LoadedModel | None = None
    if method_spec.needs_reference or base is not None:
        # The reference is also what the report compares MPT with, so any update gets one.
        reference = independent_model(setup, runs, phase="reference")
        teachers.reference = reference.net
    if method_spec.needs_ensemble:
        teachers.ensemble = [
            independent_model(replace(setup, seed=seed + member), runs, phase=f"ensemble-{member}").net
            for member in range(1, params.elodi_ensemble_size + 1)
        ]
    warm_from = base.net if recipe.warm_start and base is not None else None
    history: list[dict]
    if method == UpdateMethod.INDEPENDENT and reference is not None and warm_from is None:
        model, history = reference, []  # the independent retrain *is* the cached reference
    else:
        student_setup = replace(
            setup,
            teachers=teachers,
            callbacks=progress.enter("training"),
            checkpoint_path=checkpoint_dir / "training.ckpt" if checkpoint_dir else None,
        )
        model, history = train_fresh(
            student_setup, arch=arch, data=data, method=method, params=params, warm_from=warm_from
        )
    outcome = UpdateOutcome(model=model, history=history, data=data, inputs=inputs, reference=reference)
    if base is not None:
        # Every update with a base model trains a reference above.
        assert reference is not None, "an update with a base model has an independent reference"
        progress.enter("evaluating")
        k_old = data.class_map.k_old
        outcome.report, outcome.ledger = evaluate(
            model=model, baseline=base, evaluation=inputs.evaluation, k_old=k_old, device=torch_device, recipe=recipe
        )
        outcome.reference_report, _ = evaluate(
            model=reference,
            baseline=base,
            evaluation=inputs.evaluation,
            k_old=k_old,
            device=torch_device,
            recipe=recipe,
        )
    return outcome
