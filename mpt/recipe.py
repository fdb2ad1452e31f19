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
    # choice on CUDA and always used on the CPU (mpt.train._memory_format).
    bf16_on_cuda: bool = True
    channels_last_on_cuda: bool = True
    # torch.compile the students' forward on CUDA. Off by default: not yet measured (no GPU
    # was lent when it was added), and the first steps pay the compilation.
    compile_on_cuda: bool = False
    # Start the update's student from the base model's weights (the old classes' head rows
    # stay in their indices, the new rows come from the seeded initialisation) instead of
    # random weights (with `independent`, that is plain fine-tuning). Off in the paper's
    # recipe; the reference models always start from scratch.
    warm_start: bool = False

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict | None) -> Recipe:
        return _from_dict(cls, values)

    def digest(self) -> str:
        """Hash of the fields that change a reference model's weights (used to reuse references)."""
        values = self.to_dict()
        # Runtime-only options, and warm_start, which only the student uses.
        for not_in_references in ("poll_every_steps", "compile_on_cuda", "warm_start"):
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
