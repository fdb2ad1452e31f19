"""The arithmetic of one training step, shared by the eager loop (mpt.train) and the captured
CUDA-graph step (mpt.graphs): the teachers' logits, each student's loss, and the eager SGD step.

A `Student` is one network the optimiser updates: a lone student's net, or several students
packed into one (mpt.packed), whose output then holds one set of logits per student.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from mpt.losses import LossInputs, Method
from mpt.recipe import MethodParams

TeacherLogits = tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]


def autocast(device: torch.device, *, enabled: bool, cache: bool = True) -> torch.autocast:
    """bf16 autocast on CUDA when enabled; a no-op on the CPU, whose path stays float32."""
    return torch.autocast(
        device_type=device.type, dtype=torch.bfloat16, enabled=enabled and device.type == "cuda", cache_enabled=cache
    )


@dataclass
class Teachers:
    """Frozen networks the student learns from; each is None when the method needs none."""

    old: nn.Module | None = None
    reference: nn.Module | None = None
    ensemble: list[nn.Module] = field(default_factory=list)


@dataclass
class Student:
    """One network trained by one SGD optimiser, with one (method, params) per student it holds:
    one for a lone student's net, several for a packed net (mpt.packed)."""

    net: nn.Module
    losses: list[tuple[Method, MethodParams]]
    optimizer: torch.optim.SGD
    loss_sum: torch.Tensor  # (students held,): this epoch's running sum of each loss, on the device
    steps: int = 0


def teacher_logits(
    teachers: Teachers, x: torch.Tensor, device: torch.device, bf16: bool, *, cache: bool = True
) -> TeacherLogits:
    """(old, reference, ensemble mean) logits of one batch, each None when no student needs it."""
    with torch.no_grad(), autocast(device, enabled=bf16, cache=cache):
        old = teachers.old(x).float() if teachers.old is not None else None
        reference = teachers.reference(x).float() if teachers.reference is not None else None
        ensemble = torch.stack([m(x).float() for m in teachers.ensemble]).mean(0) if teachers.ensemble else None
    return old, reference, ensemble


def student_losses(
    student: Student,
    output: torch.Tensor,
    y: torch.Tensor,
    new_mask: torch.Tensor,
    teachers: TeacherLogits,
    epoch: int,
) -> torch.Tensor:
    """Each held student's loss on one batch, shape (students held,).

    `output` is (B, K) from a lone student's net and (N, B, K) from a packed one. The losses
    are summed for the backward pass: no student's loss depends on another's weights, so each
    student's gradient is the one it would get alone.
    """
    logits = output.unbind(0) if output.dim() == 3 else (output,)
    old, reference, ensemble = teachers
    return torch.stack(
        [
            spec.loss(
                LossInputs(
                    z,
                    y,
                    new_mask,
                    old if spec.needs_old else None,
                    reference if spec.needs_reference else None,
                    ensemble if spec.needs_ensemble else None,
                    epoch,
                ),
                params,
            )
            for z, (spec, params) in zip(logits, student.losses, strict=True)
        ]
    )


def optimizer_step(
    student: Student,
    x: torch.Tensor,
    y: torch.Tensor,
    new_mask: torch.Tensor,
    teachers: TeacherLogits,
    epoch: int,
    device: torch.device,
    bf16: bool,
) -> None:
    """One eager SGD step (torch.optim.SGD) of one student on a prepared batch; never waits for the device."""
    with autocast(device, enabled=bf16):
        output = student.net(x).float()
    losses = student_losses(student, output, y, new_mask, teachers, epoch)
    student.optimizer.zero_grad(set_to_none=True)
    losses.sum().backward()
    student.optimizer.step()
    student.loss_sum += losses.detach()
    student.steps += 1
