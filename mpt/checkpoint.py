"""Resumable training: the students' nets and SGD momentum buffers in one safetensors file per
run, written atomically after each epoch (a packed net's students are stored one by one)."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from mpt.packed import pack_state_dicts, pack_tensors, unpack_state_dict, unpack_tensors
from mpt.step import Student


def _checkpoint_prefix(i: int, count: int) -> str:
    # A lone student keeps the plain key names, so single-run checkpoints read as before.
    return "" if count == 1 else f"s{i}."


def _parameters(student: Student) -> list[torch.Tensor]:
    return [p for group in student.optimizer.param_groups for p in group["params"]]


# One student's state in a checkpoint: its state dict, and its momentum buffers by parameter index.
HeldState = tuple[dict[str, torch.Tensor], dict[int, torch.Tensor]]


def _held_states(student: Student) -> list[HeldState]:
    """The state of each student `student` holds (a packed net's slices, one per student)."""
    parameters = _parameters(student)
    state_of = student.optimizer.state
    buffers = {
        j: state_of[p]["momentum_buffer"]
        for j, p in enumerate(parameters)
        if state_of.get(p, {}).get("momentum_buffer") is not None
    }
    count = len(student.losses)
    if count == 1:
        return [(student.net.state_dict(), buffers)]
    indices = sorted(buffers)
    held_buffers = unpack_tensors([buffers[j] for j in indices], count)
    states = unpack_state_dict(student.net.state_dict(), count)
    return [(state, dict(zip(indices, mine, strict=True))) for state, mine in zip(states, held_buffers, strict=True)]


def _load_held_states(student: Student, held: list[HeldState], device: torch.device) -> None:
    """The inverse of _held_states."""
    if len(held) == 1:
        state, buffers = held[0]
    else:
        indices = sorted(held[0][1])
        if any(sorted(mine) != indices for _, mine in held):
            raise ValueError("the packed students' checkpoints hold different momentum buffers")
        state = pack_state_dicts([state for state, _ in held])
        buffers = dict(zip(indices, pack_tensors([[mine[j] for j in indices] for _, mine in held]), strict=True))
    student.net.load_state_dict(state)
    parameters = _parameters(student)
    for j, buffer in buffers.items():
        student.optimizer.state[parameters[j]]["momentum_buffer"] = buffer.to(device)


def save_checkpoint(path: Path, students: list[Student], epoch: int) -> None:
    """Write every student's net and momentum buffers after `epoch`, atomically."""
    held = [state for student in students for state in _held_states(student)]
    tensors = {}
    for i, (state, buffers) in enumerate(held):
        prefix = _checkpoint_prefix(i, len(held))
        tensors.update({f"{prefix}net.{k}": v.detach().cpu().contiguous() for k, v in state.items()})
        tensors.update({f"{prefix}momentum.{j}": b.detach().cpu().contiguous() for j, b in buffers.items()})
    tmp = path.with_suffix(".tmp")
    save_file(tensors, str(tmp), metadata={"epochs_done": str(epoch + 1), "students": str(len(held))})
    tmp.replace(path)  # a crash mid-write leaves the previous checkpoint intact


def load_checkpoint(path: Path, students: list[Student], device: torch.device) -> int:
    """Restore what save_checkpoint wrote into `students`; the number of epochs done."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata()
    count = sum(len(student.losses) for student in students)
    if int(metadata.get("students", "1")) != count:
        raise ValueError(f"checkpoint {path} holds {metadata.get('students', '1')} students, this run trains {count}")
    tensors = load_file(str(path))
    held = []
    for i in range(count):
        prefix = _checkpoint_prefix(i, count)
        net_prefix, momentum_prefix = f"{prefix}net.", f"{prefix}momentum."
        state = {k[len(net_prefix) :]: v for k, v in tensors.items() if k.startswith(net_prefix)}
        buffers = {int(k[len(momentum_prefix) :]): v for k, v in tensors.items() if k.startswith(momentum_prefix)}
        held.append((state, buffers))
    for student in students:
        _load_held_states(student, held[: len(student.losses)], device)
        held = held[len(student.losses) :]
    return int(metadata["epochs_done"])
