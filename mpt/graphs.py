"""The training step as one CUDA graph (Recipe.cuda_graphs): captured once, replayed per batch.

At batch 128 the eager engine was launch-bound on an H200 (8,700 images/s at batch 128
against 35,600 at batch 512, measured before this module existed; docs/BENCHMARKS.md, GPU):
the step's several hundred kernel launches cost more than their arithmetic. A replay launches
the whole captured step at once. How the maths stays the eager loop's (mpt.step.optimizer_step):

- Every full batch is copied into static device buffers before a replay. Augmentation stays
  outside the graph (its generator is the loop's own, not the default CUDA generator capture
  supports) and so draws exactly the eager loop's crops and flips.
- The update is SGD written out (`sgd_update`), because torch.optim.SGD reads a tensor
  learning rate back to the host (`_to_scalar` in torch 2.14), which capture forbids. Same
  arithmetic: g += wd * w; m = mu * m + g; w -= lr * m. The momentum buffers are the
  optimiser's own state tensors, created as zeros when missing (mu * 0 + g is torch's first
  step, a copy of g), so checkpoints read and write them as in the eager loop.
- The learning rate is a device tensor the loop fills each epoch: the cosine schedule needs
  no recapture.
- Gradients come from torch.autograd.grad, so nothing accumulates in `.grad` across replays.
- Autocast runs with its weight-cast cache off, as torch requires for graphed autocast
  (torch.cuda.make_graphed_callables refuses the cache).
- Warm-up before capture, on the stream the capture then uses (torch's CUDA graphs notes:
  warm up on a side stream; one stream for both, as make_graphed_callables does after
  pytorch#187745, so that libraries' lazily made handles exist on it before capture): the
  first WARMUP_STEPS full batches of each captured variant run the same step eagerly there.
  They are real training steps; nothing is computed twice.
- The last short batch of an epoch runs the same step eagerly. Padding it to the static
  shape would put the padding into BatchNorm's batch statistics (a change of the maths), and
  a second graph for one step per epoch costs a capture for nothing.
- A loss whose Python branch depends on the epoch (mpt.losses.Method.phase: ELODI) is
  captured again when the branch changes.

Cancellation and non-finite checks stay with the loop: it reads the running loss sums, which
the graph updates in place, every poll_every_steps steps.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext

import torch

from mpt.step import Student, Teachers, autocast, student_losses, teacher_logits

# Eager steps before a capture: torch.cuda.make_graphed_callables' default (num_warmup_iters=3).
WARMUP_STEPS = 3

Step = Callable[[], None]
# capture(step, stream) -> replay: records `step` (without running it) and returns what runs it.
Capture = Callable[[Step, "torch.cuda.Stream | None"], Step]


def sgd_update(
    parameters: list[torch.Tensor],
    gradients: list[torch.Tensor],
    momentum_buffers: list[torch.Tensor],
    lr: torch.Tensor,
    *,
    momentum: float,
    weight_decay: float,
) -> None:
    """torch.optim.SGD's step (no dampening, no Nesterov) with `lr` a tensor on the device."""
    decayed = torch._foreach_add(gradients, parameters, alpha=weight_decay)
    torch._foreach_mul_(momentum_buffers, momentum)
    torch._foreach_add_(momentum_buffers, decayed)
    torch._foreach_sub_(parameters, torch._foreach_mul(momentum_buffers, lr))


def parameters_and_buffers(student: Student) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """The student's parameters and their momentum buffers (the optimiser's state, made zero when missing)."""
    parameters = [p for group in student.optimizer.param_groups for p in group["params"]]
    for p in parameters:
        state = student.optimizer.state[p]
        if state.get("momentum_buffer") is None:
            state["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)
    return parameters, [student.optimizer.state[p]["momentum_buffer"] for p in parameters]


def capturable_step(
    students: list[Student],
    teachers: Teachers,
    x: torch.Tensor,
    y: torch.Tensor,
    new_mask: torch.Tensor,
    lr: torch.Tensor,
    epoch: int,
    *,
    bf16: bool,
) -> None:
    """One training step of every student with no host sync: the function that is captured.

    Run eagerly it is the same maths as mpt.step.optimizer_step for each student
    (tests/engine/test_graphs.py compares both on the CPU).
    """
    device = x.device
    shared = teacher_logits(teachers, x, device, bf16, cache=False)
    for student in students:
        group = student.optimizer.param_groups[0]
        with autocast(device, enabled=bf16, cache=False):
            output = student.net(x).float()
        losses = student_losses(student, output, y, new_mask, shared, epoch)
        parameters, buffers = parameters_and_buffers(student)
        gradients = list(torch.autograd.grad(losses.sum(), parameters))
        with torch.no_grad():
            sgd_update(
                parameters, gradients, buffers, lr, momentum=group["momentum"], weight_decay=group["weight_decay"]
            )
        student.loss_sum += losses.detach()


def capture_cuda_graph(step: Step, stream: torch.cuda.Stream | None) -> Step:
    """Record `step` into a CUDA graph on `stream`; returns the graph's replay."""
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph, stream=stream):
        step()
    return graph.replay


class CapturedStep:
    """`capturable_step` for a fixed batch shape, captured once and replayed for every full batch."""

    def __init__(
        self,
        students: list[Student],
        teachers: Teachers,
        new_mask: torch.Tensor,
        *,
        batch_size: int,
        bf16: bool,
        capture: Capture = capture_cuda_graph,
    ):
        for student in students:
            if len(student.optimizer.param_groups) != 1:
                raise ValueError("the captured step updates one parameter group per student")
            group = student.optimizer.param_groups[0]
            if group["dampening"] or group["nesterov"] or group["maximize"]:
                raise ValueError("the captured step implements SGD without dampening, Nesterov or maximize")
            parameters_and_buffers(student)  # buffers exist before capture: the graph holds their addresses
        self.students, self.teachers, self.new_mask = students, teachers, new_mask
        self.batch_size, self.bf16, self.capture = batch_size, bf16, capture
        device = new_mask.device
        self.lr = torch.zeros((), device=device)
        self.stream = torch.cuda.Stream(device) if device.type == "cuda" else None
        # Static inputs, made like the first full batch (shape, layout) when it comes.
        self.x: torch.Tensor | None = None
        self.y: torch.Tensor | None = None
        self.replay: Step | None = None
        self.phase: tuple[int, ...] | None = None  # the loss branches of the replay, or of the warm-up under way
        self.warmups = 0  # eager warm-up steps run for that phase

    def set_lr(self, lr: float) -> None:
        """The learning rate of the following steps (an asynchronous fill on the device)."""
        self.lr.fill_(lr)

    def step(self, x: torch.Tensor, y: torch.Tensor, epoch: int) -> None:
        """One training step of every student on a prepared batch; never waits for the device."""
        phase = tuple(spec.phase(params, epoch) for s in self.students for spec, params in s.losses)
        if x.shape[0] != self.batch_size:
            self._eager(x, y, epoch, self._current())
        elif self.replay is not None and phase == self.phase:
            self._replay(x, y)
        elif self.phase != phase or self.warmups < WARMUP_STEPS:
            if self.phase != phase:
                self.replay, self.phase, self.warmups = None, phase, 0
            self._eager(x, y, epoch, self.stream)
            self.warmups += 1
        else:
            static_x, static_y = self.x, self.y = torch.empty_like(x), torch.empty_like(y)
            static_x.copy_(x)
            static_y.copy_(y)
            self.replay = self.capture(
                lambda: capturable_step(
                    self.students, self.teachers, static_x, static_y, self.new_mask, self.lr, epoch, bf16=self.bf16
                ),
                self.stream,
            )
            self.replay()  # capture records the step without running it
        for student in self.students:
            student.steps += 1

    def _current(self) -> torch.cuda.Stream | None:
        return torch.cuda.current_stream(self.new_mask.device) if self.stream is not None else None

    def _replay(self, x: torch.Tensor, y: torch.Tensor) -> None:
        assert self.replay is not None and self.x is not None and self.y is not None
        self.x.copy_(x)
        self.y.copy_(y)
        self.replay()

    def _eager(self, x: torch.Tensor, y: torch.Tensor, epoch: int, stream: torch.cuda.Stream | None) -> None:
        current = self._current()
        if stream is not None and current is not None and stream != current:
            stream.wait_stream(current)  # the batch was made on the current stream
        with torch.cuda.stream(stream) if stream is not None else nullcontext():
            capturable_step(self.students, self.teachers, x, y, self.new_mask, self.lr, epoch, bf16=self.bf16)
        if stream is not None and current is not None and stream != current:
            current.wait_stream(stream)
