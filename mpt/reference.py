"""The independently trained models of an update (its reference, ELODI's ensemble): the
update's data splits and phase hooks they are trained with, the key that makes two of them
interchangeable, and the stores that keep them for reuse."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

from torch import nn

from contracts.methods import UpdateMethod
from mpt.artifacts import LoadedModel, ModelSpec, load_model, save_model
from mpt.data import ClassMap, ImageFiles, ImageSet
from mpt.nets import build_net, warm_start
from mpt.recipe import MethodParams, Recipe
from mpt.train import Callbacks, Teachers, TrainingSetup, train


@dataclass
class UpdateData:
    """Splits of one update, relabelled to its class map (as the data set holds them)."""

    class_map: ClassMap
    train: ImageSet | ImageFiles
    validation: ImageSet | ImageFiles
    evaluation: ImageSet | ImageFiles
    digest: str


@dataclass
class Progress:
    """Phase-aware hooks: the pipeline names each phase before the loop's callbacks fire."""

    on_phase: Callable[[str], None] | None = None
    callbacks: Callbacks = field(default_factory=Callbacks)
    on_data_path: Callable[[str], None] | None = None  # "resident" or "streaming", once chosen

    def enter(self, phase: str) -> Callbacks:
        if self.on_phase:
            self.on_phase(phase)
        return self.callbacks


def reference_key(
    *,
    data: UpdateData,
    shape: tuple[int, int, int],
    arch: str,
    recipe: Recipe,
    seed: int,
    mean: Sequence[float],
    std: Sequence[float],
) -> str:
    """What makes two independent references interchangeable."""
    identity: dict = {
        "data": data.digest,
        "classes": list(data.class_map.classes),
        "arch": arch,
        "recipe": recipe.digest(),
        "seed": seed,
        "normalisation": [list(mean), list(std)],
    }
    if data.train.shape != tuple(shape):  # fitted inputs; keys of unfitted data stay as they were
        identity["input_shape"] = list(shape)
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


class ReferenceStore(Protocol):
    """Where trained independent references are kept for reuse (files, or the service's db)."""

    def load(self, key: str) -> LoadedModel | None: ...

    def save(self, key: str, model: LoadedModel) -> None: ...


class FileReferenceStore:
    """Independent references cached as `<key>.safetensors` in a folder."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)

    def load(self, key: str) -> LoadedModel | None:
        path = self.folder / f"{key}.safetensors"
        return load_model(path) if path.exists() else None

    def save(self, key: str, model: LoadedModel) -> None:
        save_model(self.folder / f"{key}.safetensors", model.net, model.spec)


@dataclass(frozen=True)
class IndependentRuns:
    """What every independently trained model of one update shares (its reference, ELODI's ensemble)."""

    data: UpdateData
    arch: str
    store: ReferenceStore | None
    progress: Progress
    checkpoint_dir: Path | None


def untrained_model(
    arch: str,
    data: UpdateData,
    shape: tuple[int, int, int],
    mean: Sequence[float],
    std: Sequence[float],
    *,
    seed: int,
    warm_from: nn.Module | None = None,
) -> LoadedModel:
    """A network for the update's classes and inputs of `shape` (C, H, W): seeded random
    weights, or `warm_from`'s weights with the new classes' head rows from that seeded
    initialisation."""
    spec = ModelSpec(
        arch=arch,
        classes=tuple(data.class_map.classes),
        in_channels=shape[0],
        image_size=(shape[1], shape[2]),
        mean=tuple(mean),
        std=tuple(std),
    )
    net = build_net(arch, num_classes=len(spec.classes), in_channels=spec.in_channels, seed=seed)
    if warm_from is not None:
        warm_start(net, warm_from)
    return LoadedModel(net, spec)


def train_fresh(
    setup: TrainingSetup,
    *,
    arch: str,
    data: UpdateData,
    method: str,
    params: MethodParams,
    warm_from: nn.Module | None = None,
) -> tuple[LoadedModel, list[dict]]:
    model = untrained_model(
        arch, data, setup.train_set.shape, setup.mean, setup.std, seed=setup.seed, warm_from=warm_from
    )
    history = train(setup, net=model.net, method=method, params=params)
    return LoadedModel(model.net.cpu(), model.spec), history


def independent_model(setup: TrainingSetup, runs: IndependentRuns, *, phase: str) -> LoadedModel:
    """An independently trained model on the update's classes with `setup`'s seed, reused from
    `runs.store` when cached."""
    data, arch, store, progress, checkpoint_dir = runs.data, runs.arch, runs.store, runs.progress, runs.checkpoint_dir
    key = reference_key(
        data=data,
        shape=setup.train_set.shape,
        arch=arch,
        recipe=setup.recipe,
        seed=setup.seed,
        mean=setup.mean,
        std=setup.std,
    )
    cached = store.load(key) if store else None
    if cached is not None:
        return cached
    setup = replace(
        setup,
        teachers=Teachers(),
        callbacks=progress.enter(phase),
        checkpoint_path=checkpoint_dir / f"{phase}.ckpt" if checkpoint_dir else None,
    )
    model, _ = train_fresh(setup, arch=arch, data=data, method=UpdateMethod.INDEPENDENT, params=MethodParams())
    if store:
        store.save(key, model)
    return model
