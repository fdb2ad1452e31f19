"""Every hyperparameter of the engine, in one place.

`Recipe` is how a model is trained (optimiser, schedule, augmentation, data budget);
`MethodParams` is how the update's loss is shaped (docs/METHOD.md's b, alpha, beta, tau and the
baselines' weights). Both are plain dataclasses that round-trip through JSON so that a job row
and a checkpoint can carry them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class Recipe:
    epochs: int = 100
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    # Random crop after zero padding by `crop_padding` pixels, then a horizontal flip.
    crop_padding: int = 4
    horizontal_flip: bool = True
    # Per-channel normalisation; None means "measured on the training images".
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    # Share of the training split held out (seeded) for validation: per-epoch curves and
    # the choice of b in sweeps are made on it, never on the evaluation split.
    validation_fraction: float = 0.1
    # Data budget for quick runs: keep at most this many samples per class (None keeps all).
    train_samples_per_class: int | None = None
    eval_samples_per_class: int | None = None
    # Cancellation and non-finite losses are checked every this many steps; between checks
    # the loop never waits for the device.
    poll_every_steps: int = 20
    # bf16 autocast applies on CUDA only (the CPU path stays float32); channels_last is a
    # choice on CUDA and always used on the CPU (mpt.train.training_memory_format).
    bf16_on_cuda: bool = True
    channels_last_on_cuda: bool = True
    # Start the update's student from the base model's weights (the old classes' head rows
    # stay in their indices, the new rows come from the seeded initialisation) instead of
    # random weights (with `independent`, that is plain fine-tuning). Off in the paper's
    # recipe; the reference models always start from scratch.
    warm_start: bool = False
    # On CUDA, capture each training step once as a CUDA graph and replay it (mpt.graphs): the
    # same maths, one graph launch instead of a few hundred kernel launches per step. Off by
    # default until a GPU run has measured it (docs/BENCHMARKS.md, GPU section).
    cuda_graphs: bool = False
    # Sweeps (mpt.train.train_students): train the students as one packed network (mpt.packed)
    # with one launch sequence for all: "on", "off", or "auto" = packed on CUDA, side by side on
    # the CPU (where packed took 1.36x the side-by-side time: docs/BENCHMARKS.md, "Sweeps").
    # Architectures packing does not know train side by side.
    pack_students: Literal["auto", "on", "off"] = "auto"

    def __post_init__(self) -> None:
        if self.pack_students not in ("auto", "on", "off"):
            raise ValueError(f"pack_students must be auto, on or off, not {self.pack_students!r}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict | None) -> Recipe:
        # compile_on_cuda crashed at the first backward and was removed; a job stored with it
        # still runs (it changed nothing but the launch of the same maths).
        return _from_dict(cls, {k: v for k, v in (values or {}).items() if k != "compile_on_cuda"})

    def digest(self) -> str:
        """Hash of the fields that change a reference model's weights (used to reuse references)."""
        values = self.to_dict()
        # Runtime-only options (the same maths however it is launched: a cached reference stays
        # valid), and warm_start, which only the student uses.
        for not_in_references in ("poll_every_steps", "cuda_graphs", "pack_students", "warm_start"):
            values.pop(not_in_references)
        return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class MethodParams:
    # L_Delta: constant added to the new classes' logits inside the training cross-entropy.
    bias: float = 4.0
    # Focal weight w_i = alpha + beta * [teacher correct on sample i].
    alpha: float = 1.0
    beta: float = 5.0
    # Distillation temperature for FD-KL (no tau^2 factor).
    tau: float = 5.0
    # Weight of each FD-LM term in mpt-lm and pct-lm.
    lm_weight: float = 0.4
    # ELODI: epoch (0-based) from which distillation starts, the two LM weights, the
    # ensemble size and the top-k of elodi-topk.
    elodi_start_epoch: int = 5
    elodi_old_weight: float = 0.6
    elodi_ensemble_weight: float = 0.4
    elodi_ensemble_size: int = 2
    elodi_topk: int = 10

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict | None) -> MethodParams:
        return _from_dict(cls, values)


def _from_dict(cls, values: dict | None):
    """Build a dataclass from a dict, refusing unknown keys by name."""
    values = dict(values or {})
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ValueError(f"unknown {cls.__name__} field(s): {', '.join(unknown)}")
    for name in ("mean", "std"):
        if values.get(name) is not None:
            values[name] = tuple(float(v) for v in values[name])
    return cls(**values)
