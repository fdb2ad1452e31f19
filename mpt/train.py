"""One training loop for every method of METHOD.md.

The data set lives on the training device as uint8; each step gathers a batch, augments it
there (mpt.data.augment), runs the teachers without gradient on the same augmented batch and
the student with gradient. Nothing waits for the device except at poll points (every
`recipe.poll_every_steps` steps) and at the end of an epoch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from mpt.data import ImageSet, augment, normalize
from mpt.losses import LossInputs, get_method
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

    def all(self) -> list[nn.Module]:
        return [t for t in (self.old, self.reference, *self.ensemble) if t is not None]


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
def predict(net: nn.Module, images: torch.Tensor, *, mean, std, device: torch.device, batch_size: int = 1024) -> torch.Tensor:
    """Float32 logits of a whole image set, in evaluation mode, returned on the CPU."""
    was_training = net.training
    net.eval()
    outputs = []
    for start in range(0, images.shape[0], batch_size):
        batch = normalize(images[start : start + batch_size].to(device, non_blocking=True), mean, std)
        with _autocast(device, enabled=device.type == "cuda"):
            outputs.append(net(batch).float().cpu())
    net.train(was_training)
    return torch.cat(outputs) if outputs else torch.empty(0, 0)


def _autocast(device: torch.device, *, enabled: bool):
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=enabled and device.type == "cuda")


def _save_checkpoint(path: Path, net: nn.Module, optimizer: torch.optim.SGD, epoch: int) -> None:
    tensors = {f"net.{k}": v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    for i, param in enumerate(p for group in optimizer.param_groups for p in group["params"]):
        buffer = optimizer.state.get(param, {}).get("momentum_buffer")
        if buffer is not None:
            tensors[f"momentum.{i}"] = buffer.detach().cpu().contiguous()
    tmp = path.with_suffix(".tmp")
    save_file(tensors, str(tmp), metadata={"epochs_done": str(epoch + 1)})
    tmp.replace(path)  # a crash mid-write leaves the previous checkpoint intact


def _load_checkpoint(path: Path, net: nn.Module, optimizer: torch.optim.SGD, device: torch.device) -> int:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        epochs_done = int(handle.metadata()["epochs_done"])
    tensors = load_file(str(path))
    net.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("net.")})
    for i, param in enumerate(p for group in optimizer.param_groups for p in group["params"]):
        if f"momentum.{i}" in tensors:
            optimizer.state[param]["momentum_buffer"] = tensors[f"momentum.{i}"].to(device)
    return epochs_done


def train(
    *,
    net: nn.Module,
    train_set: ImageSet,
    recipe: Recipe,
    method: str,
    params: MethodParams,
    new_mask: torch.Tensor,
    mean,
    std,
    seed: int,
    teachers: Teachers | None = None,
    validation: ImageSet | None = None,
    device: torch.device | None = None,
    callbacks: Callbacks | None = None,
    checkpoint_path: str | Path | None = None,
) -> list[dict]:
    """Train `net` in place with `method`; returns per-epoch metrics.

    With `checkpoint_path`, the state after every epoch is written there and a run that finds
    a checkpoint resumes from it, reaching the same weights as an uninterrupted run.
    """
    spec = get_method(method)
    teachers = teachers or Teachers()
    for needed, present, what in (
        (spec.needs_old, teachers.old, "the old model"),
        (spec.needs_reference, teachers.reference, "an independent reference model"),
        (spec.needs_ensemble, teachers.ensemble, "an ensemble of independent models"),
    ):
        if needed and not present:
            raise ValueError(f"method {method} needs {what}")
    device = device or resolve_device()
    callbacks = callbacks or Callbacks()
    use_cuda_layout = device.type == "cuda" and recipe.channels_last_on_cuda
    memory_format = torch.channels_last if use_cuda_layout else torch.contiguous_format
    net.to(device, memory_format=memory_format).train()
    for teacher in teachers.all():
        teacher.to(device, memory_format=memory_format).eval()
    optimizer = torch.optim.SGD(
        net.parameters(), lr=recipe.lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay
    )
    checkpoint = Path(checkpoint_path) if checkpoint_path else None
    start_epoch = 0
    if checkpoint is not None and checkpoint.exists():
        start_epoch = _load_checkpoint(checkpoint, net, optimizer, device)

    images = train_set.images.to(device)
    labels = train_set.labels.to(device)
    new_mask = new_mask.to(device)
    n = labels.numel()
    batches_per_epoch = max(1, math.ceil(n / recipe.batch_size))
    total_steps = recipe.epochs * batches_per_epoch
    history: list[dict] = []
    bf16 = recipe.bf16_on_cuda
    # The old model is frozen: which validation samples it gets right is fixed for the run.
    old_correct_on_validation = None
    if validation is not None and len(validation) and teachers.old is not None:
        old_logits = predict(teachers.old, validation.images, mean=mean, std=std, device=device)
        old_correct_on_validation = (old_logits.argmax(1) == validation.labels, old_logits.shape[1])

    for epoch in range(start_epoch, recipe.epochs):
        for group in optimizer.param_groups:
            group["lr"] = epoch_lr(recipe, epoch)
        generator = epoch_generator(seed, epoch, device)
        order = torch.randperm(n, device=device, generator=generator)
        loss_sum = torch.zeros((), device=device)
        steps = 0
        for step, start in enumerate(range(0, n, recipe.batch_size)):
            index = order[start : start + recipe.batch_size]
            if index.numel() < 2:
                continue  # BatchNorm cannot train on a single sample
            batch = augment(images[index], padding=recipe.crop_padding, flip=recipe.horizontal_flip, generator=generator)
            x = normalize(batch, mean, std).contiguous(memory_format=memory_format)
            y = labels[index]
            with _autocast(device, enabled=bf16):
                with torch.no_grad():
                    old_logits = teachers.old(x).float() if spec.needs_old else None
                    ref_logits = teachers.reference(x).float() if spec.needs_reference else None
                    ensemble_logits = (
                        torch.stack([m(x).float() for m in teachers.ensemble]).mean(0) if spec.needs_ensemble else None
                    )
                logits = net(x).float()
            loss = spec.loss(
                LossInputs(logits, y, new_mask, old_logits, ref_logits, ensemble_logits, epoch), params
            )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += loss.detach()
            steps += 1
            if (step + 1) % recipe.poll_every_steps == 0:
                _poll(loss_sum, epoch, step, callbacks, (epoch * batches_per_epoch + step + 1) / total_steps)
        _poll(loss_sum, epoch, batches_per_epoch - 1, callbacks, (epoch + 1) / recipe.epochs)
        metrics = {"epoch": epoch, "lr": epoch_lr(recipe, epoch), "train_loss": float(loss_sum) / max(steps, 1)}
        if validation is not None and len(validation):
            metrics.update(_validate(net, validation, old_correct_on_validation, mean=mean, std=std, device=device))
        if checkpoint is not None:
            _save_checkpoint(checkpoint, net, optimizer, epoch)
        history.append(metrics)
        if callbacks.on_epoch_end:
            callbacks.on_epoch_end(epoch, metrics)
    net.eval()
    return history


def _poll(loss_sum: torch.Tensor, epoch: int, step: int, callbacks: Callbacks, progress: float) -> None:
    if not torch.isfinite(loss_sum):
        raise NonFiniteLoss(f"the training loss became non-finite in epoch {epoch + 1} (by step {step + 1})")
    if callbacks.on_progress:
        callbacks.on_progress(min(progress, 1.0))
    if callbacks.should_cancel and callbacks.should_cancel():
        raise TrainingCancelled(f"cancelled in epoch {epoch + 1}")


def _validate(net, validation: ImageSet, old_correct, *, mean, std, device) -> dict:
    """Validation accuracy, and the negative flip rate against the old model on its classes."""
    logits = predict(net, validation.images, mean=mean, std=std, device=device)
    correct = logits.argmax(1) == validation.labels
    metrics = {"val_accuracy": float(correct.float().mean())}
    if old_correct is not None:
        old_ok, k_old = old_correct
        in_old = validation.labels < k_old
        flips = old_ok & ~correct
        metrics["val_nfr"] = float(flips.sum()) / max(int(in_old.sum()), 1)
    return metrics
