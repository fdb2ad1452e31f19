"""One training loop for every method of docs/METHOD.md.

Each step takes a uint8 batch from a mpt.feed.BatchFeed (a gather from the set held on the
device, or a batch decoded by DataLoader workers: the same batches either way), augments it
on the device (mpt.augment.augment_batch), runs the teachers without gradient on the same
augmented batch and the student with gradient. Nothing waits for the device except at poll points (every
`recipe.poll_every_steps` steps) and at the end of an epoch.

`train_students` trains several students on the same batches (a sweep: one data pass and one
teacher forward per step, shared); `train` is the same loop with one student.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from torch import nn

from mpt.augment import augment_batch
from mpt.checkpoint import load_checkpoint, save_checkpoint
from mpt.data import normalize
from mpt.feed import BatchFeed, Prepared, decode_workers
from mpt.graphs import CapturedStep
from mpt.losses import Method, get_method
from mpt.packed import NotPackable, pack, unpack_into
from mpt.recipe import MethodParams, Recipe
from mpt.step import Student, Teachers, autocast, optimizer_step, teacher_logits


class TrainingCancelled(Exception):
    """Raised inside the loop when the cancellation callback says so."""


class NonFiniteLoss(RuntimeError):
    """The loss became NaN or infinite; the run stops instead of storing garbage weights."""


@dataclass
class Callbacks:
    """Hooks the loop calls; every one is optional."""

    on_epoch_end: Callable[[int, dict], None] | None = None  # (epoch, metrics)
    on_progress: Callable[[float], None] | None = None  # fraction of this run done
    should_cancel: Callable[[], bool] | None = None  # polled every few steps


@dataclass(frozen=True)
class TrainingSetup:
    """What every student of one run shares: data, class map, normalisation, recipe, teachers, hooks."""

    train_set: Prepared  # resident ImageSet or streaming FittedImages (mpt.feed)
    new_mask: torch.Tensor  # (K,) bool: the classes the update adds
    mean: Sequence[float]
    std: Sequence[float]
    recipe: Recipe
    seed: int  # data order and augmentation, not the students' initial weights
    teachers: Teachers = field(default_factory=Teachers)
    validation: Prepared | None = None
    device: torch.device | None = None  # None: CUDA when available
    callbacks: Callbacks = field(default_factory=Callbacks)
    # Written after every epoch; a run that finds it resumes from it.
    checkpoint_path: str | Path | None = None


def resolve_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def epoch_lr(recipe: Recipe, epoch: int) -> float:
    """Cosine schedule over the epochs, stepped once per epoch."""
    return recipe.lr * 0.5 * (1 + math.cos(math.pi * epoch / recipe.epochs))


def epoch_generator(seed: int, epoch: int, device: torch.device) -> torch.Generator:
    # One generator per epoch, derived from (seed, epoch): a resumed run draws the same
    # shuffles and crops as an uninterrupted one without storing generator state.
    return torch.Generator(device=device).manual_seed(seed * 1_000_003 + epoch)


@torch.no_grad()
def predict(
    net: nn.Module,
    images: Prepared,
    *,
    mean: Sequence[float],
    std: Sequence[float],
    device: torch.device,
    batch_size: int = 1024,
    workers: int = 0,
) -> torch.Tensor:
    """Float32 logits of a whole image set, in evaluation mode, returned on the CPU; a
    streaming set is decoded batch by batch (by `workers` processes), never held whole."""
    was_training = net.training
    net.eval()
    outputs = []
    for pixels in BatchFeed(images, device, workers=workers, on_device=False).in_order(batch_size):
        batch = normalize(pixels, mean, std)
        with autocast(device, enabled=device.type == "cuda"):
            outputs.append(net(batch).float().cpu())
    net.train(was_training)
    return torch.cat(outputs) if outputs else torch.empty(0, 0)


def _frozen(net: nn.Module | None, device: torch.device, memory_format: torch.memory_format, what: str) -> nn.Module:
    """A teacher ready for cheap forwards: on the device, in eval mode, BatchNorm folded into
    the preceding convolutions (the same function up to float rounding), without parameters
    that ask for gradients. The caller's module is moved but not otherwise changed."""
    if net is None:
        raise ValueError(f"a student's method needs {what}, and the setup has none")
    # torch's Module.to overloads omit memory_format beside a device; the runtime accepts both.
    net.to(device, memory_format=memory_format).eval()  # type: ignore[call-overload]
    try:
        from torch.fx.experimental.optimization import fuse

        frozen = fuse(net)  # a traced copy; leaves `net` as it is
    except Exception:  # not traceable by torch.fx: run the module as it is
        return net
    frozen = frozen.to(device, memory_format=memory_format)  # type: ignore[call-overload]  # as above
    return frozen.eval().requires_grad_(False)


def prepare_teachers(
    teachers: Teachers, specs: list[Method], device: torch.device, memory_format: torch.memory_format
) -> Teachers:
    """Only the teachers some student's method uses are prepared (and later run)."""
    return Teachers(
        old=_frozen(teachers.old, device, memory_format, "the old model") if any(s.needs_old for s in specs) else None,
        reference=_frozen(teachers.reference, device, memory_format, "an independent reference model")
        if any(s.needs_reference for s in specs)
        else None,
        ensemble=[_frozen(m, device, memory_format, "an ensemble member") for m in teachers.ensemble]
        if any(s.needs_ensemble for s in specs)
        else [],
    )


def _check_teachers(method: str, spec: Method, teachers: Teachers) -> None:
    for needed, present, what in (
        (spec.needs_old, teachers.old, "the old model"),
        (spec.needs_reference, teachers.reference, "an independent reference model"),
        (spec.needs_ensemble, teachers.ensemble, "an ensemble of independent models"),
    ):
        if needed and not present:
            raise ValueError(f"method {method} needs {what}")


def train(setup: TrainingSetup, *, net: nn.Module, method: str, params: MethodParams) -> list[dict]:
    """Train `net` in place with `method`; returns per-epoch metrics.

    With `setup.checkpoint_path`, the state after every epoch is written there and a run that
    finds a checkpoint resumes from it, reaching the same weights as an uninterrupted run.
    """
    on_epoch_end = setup.callbacks.on_epoch_end
    callbacks = replace(
        setup.callbacks,
        on_epoch_end=(lambda epoch, metrics: on_epoch_end(epoch, metrics["students"][0])) if on_epoch_end else None,
    )
    return train_students(replace(setup, callbacks=callbacks), nets=[net], methods=[method], params=[params])[0]


def train_students(
    setup: TrainingSetup, *, nets: list[nn.Module], methods: list[str], params: list[MethodParams]
) -> list[list[dict]]:
    """Train several students together, in place; returns one per-epoch history per student.

    Every step draws one batch and one augmentation, runs each needed teacher once, and then
    gives every student the same step `train` gives a lone student: each student ends with
    exactly the weights it would have reached trained alone with the same seed (packed into
    one network, Recipe.pack_students, up to the rounding of grouped kernels). With
    Recipe.cuda_graphs on CUDA the step is replayed from a CUDA graph (mpt.graphs). Callbacks
    see `{"epoch": e, "students": [metrics, ...]}` at each epoch's end.
    """
    if not (len(nets) == len(methods) == len(params)) or not nets:
        raise ValueError("need one method and one MethodParams per student, and at least one student")
    recipe, teachers, validation, callbacks = setup.recipe, setup.teachers, setup.validation, setup.callbacks
    mean, std = setup.mean, setup.std
    specs = [get_method(m) for m in methods]
    for method, spec in zip(methods, specs, strict=True):
        _check_teachers(method, spec, teachers)
    device = setup.device or resolve_device()
    memory_format = training_memory_format(device, recipe)
    bf16 = recipe.bf16_on_cuda
    for net in nets:
        net.to(device, memory_format=memory_format).train()  # type: ignore[call-overload]  # see _frozen
    students = _students(nets, specs, params, recipe, device, memory_format)
    frozen = prepare_teachers(teachers, specs, device, memory_format)
    checkpoint = Path(setup.checkpoint_path) if setup.checkpoint_path else None
    start_epoch = 0
    if checkpoint is not None and checkpoint.exists():
        start_epoch = load_checkpoint(checkpoint, students, device)

    workers = decode_workers(recipe)
    feed = BatchFeed(setup.train_set, device, workers=workers, on_device=True)
    new_mask = setup.new_mask.to(device)
    # Made after the checkpoint's momentum buffers are in place: the graph holds their addresses.
    captured = (
        CapturedStep(students, frozen, new_mask, batch_size=recipe.batch_size, bf16=bf16)
        if recipe.cuda_graphs and device.type == "cuda"
        else None
    )
    # Normalisation constants made once on the device: no host-to-device copy inside the loop.
    mean_t = torch.tensor(mean, device=device).view(1, -1, 1, 1)
    std_t = torch.tensor(std, device=device).view(1, -1, 1, 1)
    n = len(feed)
    batches_per_epoch = max(1, math.ceil(n / recipe.batch_size))
    total_steps = recipe.epochs * batches_per_epoch
    histories: list[list[dict]] = [[] for _ in nets]
    # The old model is frozen: which validation samples it gets right is fixed for the run.
    old_correct_on_validation = None
    if validation is not None and len(validation) and teachers.old is not None:
        old_logits = predict(teachers.old, validation, mean=mean, std=std, device=device, workers=workers)
        old_correct_on_validation = (old_logits.argmax(1) == validation.labels, old_logits.shape[1])

    for epoch in range(start_epoch, recipe.epochs):
        for student in students:
            for group in student.optimizer.param_groups:
                group["lr"] = epoch_lr(recipe, epoch)
            student.loss_sum.zero_()  # in place: a captured step holds its address
            student.steps = 0
        if captured is not None:
            captured.set_lr(epoch_lr(recipe, epoch))
        generator = epoch_generator(setup.seed, epoch, device)
        order = torch.randperm(n, device=device, generator=generator)
        for step, images, y in feed.shuffled(order, recipe.batch_size):
            batch = augment_batch(images, recipe, generator)
            # Same arithmetic as mpt.data.normalize, with the constants already on the device.
            x = ((batch.float() / 255 - mean_t) / std_t).contiguous(memory_format=memory_format)
            if captured is not None:
                captured.step(x, y, epoch)
            else:
                shared = teacher_logits(frozen, x, device, bf16)
                for student in students:
                    optimizer_step(student, x, y, new_mask, shared, epoch, device, bf16)
            if (step + 1) % recipe.poll_every_steps == 0:
                _poll(students, epoch, step, callbacks, (epoch * batches_per_epoch + step + 1) / total_steps)
        _check_finite(students, epoch, batches_per_epoch - 1)  # never checkpoint a diverged run
        _write_back(students, nets)
        loss_sums = torch.cat([student.loss_sum for student in students]).tolist()
        steps = [student.steps for student in students for _ in student.losses]
        all_metrics = []
        for net, loss_sum, count in zip(nets, loss_sums, steps, strict=True):
            metrics = {"epoch": epoch, "lr": epoch_lr(recipe, epoch), "train_loss": loss_sum / max(count, 1)}
            if validation is not None and len(validation):
                metrics.update(
                    _validate(
                        net,
                        validation,
                        old_correct_on_validation,
                        mean=mean,
                        std=std,
                        device=device,
                        workers=workers,
                    )
                )
            all_metrics.append(metrics)
        if checkpoint is not None:
            save_checkpoint(checkpoint, students, epoch)
        for history, metrics in zip(histories, all_metrics, strict=True):
            history.append(metrics)
        if callbacks.on_epoch_end:
            callbacks.on_epoch_end(epoch, {"epoch": epoch, "students": all_metrics})
        # Polled after the checkpoint, so a cancel or crash at the boundary keeps this epoch.
        _poll(students, epoch, batches_per_epoch - 1, callbacks, (epoch + 1) / recipe.epochs)
    _write_back(students, nets)
    for net in nets:
        net.eval()
    return histories


def _students(
    nets: list[nn.Module],
    specs: list[Method],
    params: list[MethodParams],
    recipe: Recipe,
    device: torch.device,
    memory_format: torch.memory_format,
) -> list[Student]:
    """One Student per net, or one packed Student for all of them (Recipe.pack_students)."""
    losses = list(zip(specs, params, strict=True))
    packed = None
    # "auto" packs on CUDA only: packing's gain is one launch sequence for all students; on
    # the CPU, which pays little per launch, a packed sweep took 1.36x the side-by-side time
    # (docs/BENCHMARKS.md, "Sweeps").
    if len(nets) > 1 and (recipe.pack_students == "on" or (recipe.pack_students == "auto" and device.type == "cuda")):
        try:
            packed = pack(nets).to(memory_format=memory_format)  # on the nets' device already
        except NotPackable:
            packed = None  # an architecture packing does not know: the students train side by side
    held = [(packed, losses)] if packed is not None else [(net, [loss]) for net, loss in zip(nets, losses, strict=True)]
    return [
        Student(
            net,
            net_losses,
            torch.optim.SGD(net.parameters(), lr=recipe.lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay),
            torch.zeros(len(net_losses), device=device),
        )
        for net, net_losses in held
    ]


def _write_back(students: list[Student], nets: list[nn.Module]) -> None:
    """Packed weights into the students' own networks (packing puts every student in one; a
    lone student's net is its own)."""
    if len(students) < len(nets):
        unpack_into(students[0].net, nets)


def _check_finite(students: list[Student], epoch: int, step: int) -> None:
    # One host sync for all students: the sum is finite only if every student's loss is.
    loss_sums = torch.cat([s.loss_sum for s in students])
    if not torch.isfinite(loss_sums.sum()):
        held = [(spec.name, params) for s in students for spec, params in s.losses]
        bad = [
            name if len(held) == 1 else f"student {i} ({name}, {params})"
            for i, ((name, params), finite) in enumerate(zip(held, torch.isfinite(loss_sums).tolist(), strict=True))
            if not finite
        ]
        raise NonFiniteLoss(
            f"the training loss became non-finite in epoch {epoch + 1} (by step {step + 1}): {', '.join(bad)}"
        )


def _poll(students: list[Student], epoch: int, step: int, callbacks: Callbacks, progress: float) -> None:
    _check_finite(students, epoch, step)
    if callbacks.on_progress:
        callbacks.on_progress(min(progress, 1.0))
    if callbacks.should_cancel and callbacks.should_cancel():
        raise TrainingCancelled(f"cancelled in epoch {epoch + 1}")


def training_memory_format(device: torch.device, recipe: Recipe) -> torch.memory_format:
    """channels_last on CUDA as the recipe says; always on the CPU, where oneDNN's convolutions,
    pooling and BatchNorm run faster in that layout (a layout, not a change of the maths:
    docs/BENCHMARKS.md has the measurement)."""
    if device.type == "cuda":
        return torch.channels_last if recipe.channels_last_on_cuda else torch.contiguous_format
    return torch.channels_last


def _validate(
    net: nn.Module,
    validation: Prepared,
    old_correct: tuple[torch.Tensor, int] | None,
    *,
    mean: Sequence[float],
    std: Sequence[float],
    device: torch.device,
    workers: int,
) -> dict:
    """Validation accuracy, and the negative flip rate against the old model on its classes."""
    logits = predict(net, validation, mean=mean, std=std, device=device, workers=workers)
    correct = logits.argmax(1) == validation.labels
    metrics = {"val_accuracy": float(correct.float().mean())}
    if old_correct is not None:
        old_ok, k_old = old_correct
        in_old = validation.labels < k_old
        flips = old_ok & ~correct
        metrics["val_nfr"] = float(flips.sum()) / max(int(in_old.sum()), 1)
    return metrics
