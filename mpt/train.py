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
from safetensors.torch import load_file, save_file
from torch import nn

from mpt.augment import augment_batch
from mpt.data import normalize
from mpt.feed import BatchFeed, Prepared, decode_workers
from mpt.losses import LossInputs, Method, get_method
from mpt.recipe import MethodParams, Recipe


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


@dataclass
class Teachers:
    """Frozen networks the student learns from; each is None when the method needs none."""

    old: nn.Module | None = None
    reference: nn.Module | None = None
    ensemble: list[nn.Module] = field(default_factory=list)


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
    mean,
    std,
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
        with _autocast(device, enabled=device.type == "cuda"):
            outputs.append(net(batch).float().cpu())
    net.train(was_training)
    return torch.cat(outputs) if outputs else torch.empty(0, 0)


def _autocast(device: torch.device, *, enabled: bool):
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=enabled and device.type == "cuda")


def _checkpoint_prefix(i: int, count: int) -> str:
    # A lone student keeps the plain key names, so single-run checkpoints read as before.
    return "" if count == 1 else f"s{i}."


def _save_checkpoint(path: Path, students: list[_Student], epoch: int) -> None:
    tensors = {}
    for i, student in enumerate(students):
        prefix = _checkpoint_prefix(i, len(students))
        tensors.update({f"{prefix}net.{k}": v.detach().cpu().contiguous() for k, v in student.net.state_dict().items()})
        for j, param in enumerate(p for group in student.optimizer.param_groups for p in group["params"]):
            buffer = student.optimizer.state.get(param, {}).get("momentum_buffer")
            if buffer is not None:
                tensors[f"{prefix}momentum.{j}"] = buffer.detach().cpu().contiguous()
    tmp = path.with_suffix(".tmp")
    save_file(tensors, str(tmp), metadata={"epochs_done": str(epoch + 1), "students": str(len(students))})
    tmp.replace(path)  # a crash mid-write leaves the previous checkpoint intact


def _load_checkpoint(path: Path, students: list[_Student], device: torch.device) -> int:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata()
    if int(metadata.get("students", "1")) != len(students):
        raise ValueError(
            f"checkpoint {path} holds {metadata.get('students', '1')} students, this run trains {len(students)}"
        )
    tensors = load_file(str(path))
    for i, student in enumerate(students):
        prefix = _checkpoint_prefix(i, len(students))
        net_prefix = f"{prefix}net."
        student.net.load_state_dict({k[len(net_prefix) :]: v for k, v in tensors.items() if k.startswith(net_prefix)})
        for j, param in enumerate(p for group in student.optimizer.param_groups for p in group["params"]):
            if f"{prefix}momentum.{j}" in tensors:
                student.optimizer.state[param]["momentum_buffer"] = tensors[f"{prefix}momentum.{j}"].to(device)
    return int(metadata["epochs_done"])


@dataclass
class _Student:
    """One network being trained, with its own loss, optimiser and running loss."""

    net: nn.Module
    method: str
    spec: Method
    params: MethodParams
    optimizer: torch.optim.SGD
    runner: nn.Module | None = None  # what runs the training forward: `net`, or a compiled `net`
    loss_sum: torch.Tensor | None = None
    steps: int = 0


def _frozen(net: nn.Module, device: torch.device, memory_format) -> nn.Module:
    """A teacher ready for cheap forwards: on the device, in eval mode, BatchNorm folded into
    the preceding convolutions (the same function up to float rounding), without parameters
    that ask for gradients. The caller's module is moved but not otherwise changed."""
    net.to(device, memory_format=memory_format).eval()
    try:
        from torch.fx.experimental.optimization import fuse

        frozen = fuse(net)  # a traced copy; leaves `net` as it is
    except Exception:  # not traceable by torch.fx: run the module as it is
        return net
    return frozen.to(device, memory_format=memory_format).eval().requires_grad_(False)


def _prepare_teachers(teachers: Teachers, specs: list[Method], device, memory_format) -> Teachers:
    """Only the teachers some student's method uses are prepared (and later run)."""
    return Teachers(
        old=_frozen(teachers.old, device, memory_format) if any(s.needs_old for s in specs) else None,
        reference=_frozen(teachers.reference, device, memory_format) if any(s.needs_reference for s in specs) else None,
        ensemble=[_frozen(m, device, memory_format) for m in teachers.ensemble]
        if any(s.needs_ensemble for s in specs)
        else [],
    )


def _teacher_logits(teachers: Teachers, x: torch.Tensor, device: torch.device, bf16: bool):
    """(old, reference, ensemble mean) logits of one batch, each None when no student needs it."""
    with torch.no_grad(), _autocast(device, enabled=bf16):
        old = teachers.old(x).float() if teachers.old is not None else None
        reference = teachers.reference(x).float() if teachers.reference is not None else None
        ensemble = torch.stack([m(x).float() for m in teachers.ensemble]).mean(0) if teachers.ensemble else None
    return old, reference, ensemble


def _student_step(student: _Student, x, y, new_mask, teacher_logits, epoch: int, device, bf16: bool) -> None:
    """One SGD step of one student on a prepared batch; never waits for the device."""
    with _autocast(device, enabled=bf16):
        logits = student.runner(x).float()
    old, reference, ensemble = teacher_logits
    inputs = LossInputs(
        logits,
        y,
        new_mask,
        old if student.spec.needs_old else None,
        reference if student.spec.needs_reference else None,
        ensemble if student.spec.needs_ensemble else None,
        epoch,
    )
    loss = student.spec.loss(inputs, student.params)
    student.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    student.optimizer.step()
    student.loss_sum += loss.detach()
    student.steps += 1


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
    exactly the weights it would have reached trained alone with the same seed. Callbacks
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
    memory_format = _memory_format(device, recipe)
    bf16 = recipe.bf16_on_cuda
    students = []
    for net, method, spec, p in zip(nets, methods, specs, params, strict=True):
        net.to(device, memory_format=memory_format).train()
        optimizer = torch.optim.SGD(
            net.parameters(), lr=recipe.lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay
        )
        students.append(_Student(net, method, spec, p, optimizer, runner=_maybe_compile(net, recipe, device)))
    frozen = _prepare_teachers(teachers, specs, device, memory_format)
    checkpoint = Path(setup.checkpoint_path) if setup.checkpoint_path else None
    start_epoch = 0
    if checkpoint is not None and checkpoint.exists():
        start_epoch = _load_checkpoint(checkpoint, students, device)

    workers = decode_workers(recipe)
    feed = BatchFeed(setup.train_set, device, workers=workers, on_device=True)
    new_mask = setup.new_mask.to(device)
    # Normalisation constants made once on the device: no host-to-device copy inside the loop.
    mean_t = torch.tensor(mean, device=device).view(1, -1, 1, 1)
    std_t = torch.tensor(std, device=device).view(1, -1, 1, 1)
    n = len(feed)
    batches_per_epoch = max(1, math.ceil(n / recipe.batch_size))
    total_steps = recipe.epochs * batches_per_epoch
    histories: list[list[dict]] = [[] for _ in students]
    # The old model is frozen: which validation samples it gets right is fixed for the run.
    old_correct_on_validation = None
    if validation is not None and len(validation) and teachers.old is not None:
        old_logits = predict(teachers.old, validation, mean=mean, std=std, device=device, workers=workers)
        old_correct_on_validation = (old_logits.argmax(1) == validation.labels, old_logits.shape[1])

    for epoch in range(start_epoch, recipe.epochs):
        for student in students:
            for group in student.optimizer.param_groups:
                group["lr"] = epoch_lr(recipe, epoch)
            student.loss_sum = torch.zeros((), device=device)
            student.steps = 0
        generator = epoch_generator(setup.seed, epoch, device)
        order = torch.randperm(n, device=device, generator=generator)
        for step, images, y in feed.shuffled(order, recipe.batch_size):
            batch = augment_batch(images, recipe, generator)
            # Same arithmetic as mpt.data.normalize, with the constants already on the device.
            x = ((batch.float() / 255 - mean_t) / std_t).contiguous(memory_format=memory_format)
            teacher_logits = _teacher_logits(frozen, x, device, bf16)
            for student in students:
                _student_step(student, x, y, new_mask, teacher_logits, epoch, device, bf16)
            if (step + 1) % recipe.poll_every_steps == 0:
                _poll(students, epoch, step, callbacks, (epoch * batches_per_epoch + step + 1) / total_steps)
        _check_finite(students, epoch, batches_per_epoch - 1)  # never checkpoint a diverged run
        all_metrics = []
        for student in students:
            metrics = {
                "epoch": epoch,
                "lr": epoch_lr(recipe, epoch),
                "train_loss": float(student.loss_sum) / max(student.steps, 1),
            }
            if validation is not None and len(validation):
                metrics.update(
                    _validate(
                        student.net,
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
            _save_checkpoint(checkpoint, students, epoch)
        for history, metrics in zip(histories, all_metrics, strict=True):
            history.append(metrics)
        if callbacks.on_epoch_end:
            callbacks.on_epoch_end(epoch, {"epoch": epoch, "students": all_metrics})
        # Polled after the checkpoint, so a cancel or crash at the boundary keeps this epoch.
        _poll(students, epoch, batches_per_epoch - 1, callbacks, (epoch + 1) / recipe.epochs)
    for student in students:
        student.net.eval()
    return histories


def _check_finite(students: list[_Student], epoch: int, step: int) -> None:
    # One host sync for all students: the sum is finite only if every student's loss is.
    if not torch.isfinite(torch.stack([s.loss_sum for s in students]).sum()):
        bad = [
            s.method if len(students) == 1 else f"student {i} ({s.method}, {s.params})"
            for i, s in enumerate(students)
            if not torch.isfinite(s.loss_sum)
        ]
        raise NonFiniteLoss(
            f"the training loss became non-finite in epoch {epoch + 1} (by step {step + 1}): {', '.join(bad)}"
        )


def _poll(students: list[_Student], epoch: int, step: int, callbacks: Callbacks, progress: float) -> None:
    _check_finite(students, epoch, step)
    if callbacks.on_progress:
        callbacks.on_progress(min(progress, 1.0))
    if callbacks.should_cancel and callbacks.should_cancel():
        raise TrainingCancelled(f"cancelled in epoch {epoch + 1}")


def _memory_format(device: torch.device, recipe: Recipe):
    """channels_last on CUDA as the recipe says; always on the CPU, where oneDNN's convolutions,
    pooling and BatchNorm run faster in that layout (a layout, not a change of the maths:
    docs/BENCHMARKS.md has the measurement)."""
    if device.type == "cuda":
        return torch.channels_last if recipe.channels_last_on_cuda else torch.contiguous_format
    return torch.channels_last


def _maybe_compile(net: nn.Module, recipe: Recipe, device: torch.device) -> nn.Module:
    """UNMEASURED opt-in (Recipe.compile_on_cuda): torch.compile of the student's forward on
    CUDA. It shares `net`'s parameters; nothing of it has been timed or tested on a GPU yet."""
    if device.type == "cuda" and recipe.compile_on_cuda:
        return torch.compile(net)
    return net


def _validate(net, validation: Prepared, old_correct, *, mean, std, device, workers: int) -> dict:
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
