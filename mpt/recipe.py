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
from typing import TypeVar

TRAIN_CROPS = ("pad", "random_resized")
DATA_PATHS = ("auto", "resident", "streaming")
PACK_STUDENTS = ("auto", "on", "off")
# Left out of Recipe.digest: runtime options that never change the weights, and warm_start,
# which only the student uses.
NOT_IN_REFERENCE_DIGEST = (
    "poll_every_steps",
    "cuda_graphs",
    "pack_students",
    "data_path",
    "resident_memory_fraction",
    "decode_workers",
    "ledger_thumbnail_side",
    "warm_start",
)
INPUT_FIELDS = ("image_size", "train_crop", "crop_scale", "crop_ratio")


@dataclass(frozen=True)
class Recipe:
    epochs: int = 100
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    # Input resolution: every image is resized (bilinear, antialiased, aspect kept) to cover
    # image_size x image_size and its centre cut out, in training and evaluation alike. None
    # keeps the data's own size, which all its images must then share. An update always
    # keeps its base model's size (the model file's flipguard.image_size).
    image_size: int | None = None
    # Training augmentation of the fitted images, on the device, per sample:
    # "pad": random crop after zero padding by `crop_padding` pixels (small images);
    # "random_resized": torchvision's RandomResizedCrop, a box of `crop_scale` of the area
    # and `crop_ratio` of aspect, resized back to the input size (photos).
    # Then a horizontal flip when `horizontal_flip`.
    train_crop: str = "pad"
    crop_padding: int = 4
    crop_scale: tuple[float, float] = (0.08, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
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
    # How images reach the device: "resident" decodes the whole set once and keeps it on the
    # device (fastest when it fits); "streaming" decodes each batch in DataLoader workers;
    # "auto" picks resident when the fitted set needs at most `resident_memory_fraction` of
    # the free device memory and of the available host memory. Same batches, same maths.
    data_path: str = "auto"
    resident_memory_fraction: float = 0.5
    # DataLoader processes that decode images (streaming, and a resident set's one decode);
    # None: one per CPU core, at most 8.
    decode_workers: int | None = None
    # Flip reports keep each flipped sample's input image scaled to at most this many pixels
    # a side, so that thousands of flips at 224 px stay small.
    ledger_thumbnail_side: int = 64
    # On CUDA, capture each training step once as a CUDA graph and replay it (mpt.graphs): the
    # same maths, one graph launch instead of a few hundred kernel launches per step. Off by
    # default until a GPU run has measured it (docs/BENCHMARKS.md, GPU section).
    cuda_graphs: bool = False
    # Sweeps (mpt.train.train_students): train the students as one packed network (mpt.packed)
    # with one launch sequence for all: "on", "off", or "auto" = packed on CUDA, side by side on
    # the CPU (where packed took 1.36x the side-by-side time: docs/BENCHMARKS.md, "Sweeps").
    # Architectures packing does not know train side by side.
    pack_students: str = "auto"

    def __post_init__(self) -> None:
        for name, value, allowed in (
            ("train_crop", self.train_crop, TRAIN_CROPS),
            ("data_path", self.data_path, DATA_PATHS),
            ("pack_students", self.pack_students, PACK_STUDENTS),
        ):
            if value not in allowed:
                raise ValueError(f"recipe {name} must be one of {', '.join(allowed)}, got {value!r}")
        for name, (low, high), top in (("crop_scale", self.crop_scale, 1.0), ("crop_ratio", self.crop_ratio, None)):
            if not 0 < low <= high or (top is not None and high > top):
                raise ValueError(f"recipe {name} must be (low, high) with 0 < low <= high{' <= 1' if top else ''}")

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
        for name in NOT_IN_REFERENCE_DIGEST:
            values.pop(name)
        # Input fields at their defaults are left out, so recipes digested before they existed
        # keep their digests (and their cached references).
        for name in INPUT_FIELDS:
            if values[name] == getattr(Recipe, name):
                values.pop(name)
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


# The dataclasses _from_dict builds.
_Params = TypeVar("_Params", Recipe, MethodParams)


def _from_dict(cls: type[_Params], values: dict | None) -> _Params:
    """Build a dataclass from a dict, refusing unknown keys by name."""
    values = dict(values or {})
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ValueError(f"unknown {cls.__name__} field(s): {', '.join(unknown)}")
    for name in ("mean", "std", "crop_scale", "crop_ratio"):
        if values.get(name) is not None:
            values[name] = tuple(float(v) for v in values[name])
    return cls(**values)
