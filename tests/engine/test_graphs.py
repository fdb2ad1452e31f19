"""The CUDA-graph step (mpt.graphs) on the CPU: the function that is captured, run eagerly,
equals the engine's eager step; the capture/replay bookkeeping feeds it the same batches."""

from __future__ import annotations

import pytest
import torch

from mpt.graphs import WARMUP_STEPS, CapturedStep, capturable_step
from mpt.losses import get_method
from mpt.nets import build_net
from mpt.packed import pack
from mpt.recipe import MethodParams
from mpt.step import Student, Teachers, optimizer_step, teacher_logits

K_OLD, K, BATCH = 5, 10, 16
CPU = torch.device("cpu")
SGD = dict(momentum=0.9, weight_decay=5e-4)


def teachers() -> Teachers:
    return Teachers(
        old=build_net("small_cnn", num_classes=K_OLD, in_channels=1, seed=101).eval().requires_grad_(False),
        reference=build_net("small_cnn", num_classes=K, in_channels=1, seed=102).eval().requires_grad_(False),
        ensemble=[
            build_net("small_cnn", num_classes=K, in_channels=1, seed=s).eval().requires_grad_(False)
            for s in (103, 104)
        ],
    )


def new_mask() -> torch.Tensor:
    return torch.arange(K) >= K_OLD


def student(methods: list[str], params: list[MethodParams], *, packed: bool) -> Student:
    nets = [build_net("small_cnn", num_classes=K, in_channels=1, seed=1 + i) for i in range(len(methods))]
    net = pack(nets) if packed else nets[0]
    return Student(
        net.to(memory_format=torch.channels_last).train(),
        [(get_method(m), p) for m, p in zip(methods, params, strict=True)],
        torch.optim.SGD(net.parameters(), lr=0.1, **SGD),
        torch.zeros(len(methods)),
    )


def batches(sizes: list[int], seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(seed)
    return [
        (
            torch.randn(size, 1, 28, 28, generator=generator).contiguous(memory_format=torch.channels_last),
            torch.randint(0, K, (size,), generator=generator),
        )
        for size in sizes
    ]


def assert_close_students(
    a: Student, b: Student, tolerance: float, *, statistics_tolerance: float | None = None
) -> None:
    """Losses, parameters and momentum buffers within `tolerance`; BatchNorm's running
    statistics within `statistics_tolerance` (default: `tolerance`)."""
    close = dict(rtol=tolerance, atol=tolerance)
    loose = close if statistics_tolerance is None else dict(rtol=statistics_tolerance, atol=statistics_tolerance)
    torch.testing.assert_close(a.loss_sum, b.loss_sum, **close)
    parameters = dict(a.net.named_parameters())
    for (name, x), (_, y) in zip(a.net.state_dict().items(), b.net.state_dict().items(), strict=True):
        torch.testing.assert_close(x, y, **(close if name in parameters else loose), msg=lambda m, n=name: f"{n}: {m}")
    for p, q in zip(a.net.parameters(), b.net.parameters(), strict=True):
        torch.testing.assert_close(
            a.optimizer.state[p]["momentum_buffer"], b.optimizer.state[q]["momentum_buffer"], **close
        )


CASES = {
    "mpt-kl": (["mpt-kl"], [MethodParams()], False),
    "elodi": (["elodi"], [MethodParams(elodi_start_epoch=0)], False),
    "packed sweep of b": (["mpt-kl"] * 3, [MethodParams(bias=b) for b in (0.0, 2.0, 4.0)], True),
}


# Two epochs with the cosine schedule's new learning rate between them, each ending in a short
# batch: with momentum, every step after the first uses the buffers of the ones before.
EPOCHS = ((0.1, [BATCH, BATCH, 5]), (0.05, [BATCH, 7]))


@pytest.mark.parametrize("case", list(CASES))
def test_capturable_step_equals_the_engines_eager_step(case):
    methods, params, packed = CASES[case]
    eager, graphed, frozen = (
        student(methods, params, packed=packed),
        student(methods, params, packed=packed),
        teachers(),
    )
    lr = torch.zeros(())  # the device-tensor learning rate, here on the CPU
    for epoch, (epoch_lr, sizes) in enumerate(EPOCHS):
        lr.fill_(epoch_lr)
        for group in eager.optimizer.param_groups:
            group["lr"] = epoch_lr
        for x, y in batches(sizes, seed=3 + epoch):
            optimizer_step(eager, x, y, new_mask(), teacher_logits(frozen, x, CPU, False), epoch, CPU, False)
            capturable_step([graphed], frozen, x, y, new_mask(), lr, epoch, bf16=False)
            # torch.optim.SGD rounds w - lr * m once (one fused multiply-add); with the learning
            # rate a tensor it is rounded twice. The weights stay within 1.2e-7 of each other;
            # BatchNorm's running means, averages of conv outputs over the 5- and 7-sample
            # batches, carry that to 1.5e-6 (measured), hence their own tolerance.
            assert_close_students(eager, graphed, 1e-6, statistics_tolerance=1e-5)
    assert not torch.equal(graphed.loss_sum, torch.zeros_like(graphed.loss_sum))


def eager_capture(step, stream):
    """Stands in for capture_cuda_graph on the CPU: 'replay' runs the recorded step again."""
    eager_capture.count += 1
    return step


def test_captured_step_feeds_the_step_exactly_what_an_uncaptured_loop_does():
    """Warm-up, capture, replays through the static buffers, the learning rate filled per
    epoch, the last short batch, and ELODI's recapture when its distillation starts: bit for
    bit the same as calling capturable_step on every batch."""
    methods, params = ["elodi", "mpt-kl"], [MethodParams(elodi_start_epoch=1), MethodParams()]
    direct = [student([m], [p], packed=False) for m, p in zip(methods, params, strict=True)]
    graphed = [student([m], [p], packed=False) for m, p in zip(methods, params, strict=True)]
    frozen = teachers()
    eager_capture.count = 0
    runner = CapturedStep(
        graphed,
        frozen,
        new_mask(),
        batch_size=BATCH,
        bf16=False,
        capture=eager_capture,
    )
    lr = torch.zeros(())
    full_batches = WARMUP_STEPS + 3  # warm-up, the capture step, then replays
    for epoch, epoch_lr in enumerate((0.1, 0.05)):
        runner.set_lr(epoch_lr)
        lr.fill_(epoch_lr)
        for x, y in batches([BATCH] * full_batches + [5], seed=10 + epoch):
            capturable_step(direct, frozen, x, y, new_mask(), lr, epoch, bf16=False)
            runner.step(x, y, epoch)
        for a, b in zip(direct, graphed, strict=True):
            assert b.steps == (epoch + 1) * (full_batches + 1)
            assert_close_students(a, b, 0.0)
            for s in (a, b):
                s.loss_sum.zero_()  # as the loop does at each epoch: in place, the graph holds its address
    assert eager_capture.count == 2  # one capture per ELODI phase, none for the new learning rate
