"""Training throughput: docs/METHOD.md's reference loop against the engine, on the CPU or a GPU.

Both loops, in this one process, train fresh students with MPT-KL (mpt.losses) against the same
frozen old teacher (first half of the classes) and reference teacher (all classes), batch 128,
SGD lr 0.1 / momentum 0.9 / wd 5e-4, RandomCrop(pad 4) + horizontal flip + normalisation.

* reference: the paper's loop as a user runs it. torch.utils.data.DataLoader with 4 workers
  ('spawn' context: torch has already run in this process, and forked workers can hang), each
  sample decoded to a PIL image and put through torchvision RandomCrop + RandomHorizontalFlip
  + ToTensor + Normalize; each batch copied to the device (pinned memory on CUDA, so the copy
  is as cheap as a user can make it); student, old teacher and reference teacher on the device
  in float32; the loss read back with `.item()` every step.
* engine variants (`mpt.train.train_students`: data resident on the device as uint8, batched
  augmentation, teachers prepared once, no per-step host sync; bf16 and channels_last on CUDA
  as the recipe's defaults say):
  - eager: the recipe's defaults, one student;
  - graphs: Recipe.cuda_graphs (each step replayed from one CUDA graph), one student;
  - side-by-side, packed, packed-graphs: a sweep of four students (b = 0, 1, 2, 4), trained
    side by side (Recipe.pack_students="off") or packed into one network ("on"), the latter
    without and with graphs; their figure is images per second per student (4 x the images
    of the pass over elapsed time), the sweep's rate.
* compute only: the engine's own eager step on one fixed, already augmented batch: the model
  arithmetic with no data work at all.

Runs alternate (reference, variants..., then reversed) so that other load on the machine hits
all alike; the figures are medians over the repeats. Steady states are compared: the reference
after its workers started and `--warmup` batches ran (their start-up, which the paper's loop
pays every epoch, is printed, not counted); the engine between its first and last progress
poll (poll_every_steps apart; each poll waits for the device), so set-up, CUDA-graph warm-up
and capture are not counted either. The engine's rate over the whole call, set-up included, is
printed beside it.

    .venv/bin/python bench/train_throughput.py --arch small_cnn --steps 40 --repeats 3 --threads 1
    PYTHONPATH=. python3 bench/train_throughput.py --arch resnet18 --device cuda --steps 200 \\
        --variants eager,graphs,packed,packed-graphs

On a small shared machine, run it at --threads 1 as well: with two intra-op threads on two
cores, any other busy process stalls every parallel region of both loops (OpenMP barriers),
and the measurement says more about the neighbour than about the loops.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import time
from dataclasses import dataclass

import torch
from harness import RECIPE, SWEEP_BIASES, Workload, device_name, new_mask, synchronize, teachers_for, workload
from paper_loop import reference_run

from mpt.augment import augment
from mpt.data import channel_stats
from mpt.losses import get_method
from mpt.nets import build_net
from mpt.recipe import MethodParams
from mpt.step import Student, optimizer_step, teacher_logits
from mpt.train import Callbacks, TrainingSetup, prepare_teachers, train_students, training_memory_format

# name -> (recipe changes, students)
VARIANTS: dict[str, tuple[dict, int]] = {
    "eager": ({}, 1),
    "graphs": ({"cuda_graphs": True}, 1),
    "side-by-side": ({"pack_students": "off"}, len(SWEEP_BIASES)),
    "packed": ({"pack_students": "on"}, len(SWEEP_BIASES)),
    "packed-graphs": ({"pack_students": "on", "cuda_graphs": True}, len(SWEEP_BIASES)),
}


@dataclass
class EngineRate:
    """Images per second per student: between the first and last progress poll, and over the
    whole call with set-up."""

    steady: float
    whole: float


def engine_run(
    work: Workload,
    *,
    steps: int,
    changes: dict | None = None,
    students: int = 1,
) -> EngineRate:
    """One `mpt.train.train_students` epoch of `steps` batches with `students` MPT-KL students
    (b from SWEEP_BIASES; b = 4 for one) and the recipe `changes`."""
    subset = work.train_set.take(torch.arange(steps * RECIPE.batch_size))
    in_channels = work.train_set.images.shape[1]
    nets = [build_net(work.arch, num_classes=work.k, in_channels=in_channels, seed=1) for _ in range(students)]
    biases = SWEEP_BIASES if students > 1 else (4.0,)
    polls: list[tuple[float, float]] = []
    setup = TrainingSetup(
        train_set=subset,
        recipe=dataclasses.replace(RECIPE, **(changes or {})),
        new_mask=new_mask(work.k, work.k_old),
        mean=work.mean,
        std=work.std,
        seed=0,
        teachers=teachers_for(work.arch, work.k, work.k_old, in_channels),
        device=work.device,
        callbacks=Callbacks(on_progress=lambda fraction: polls.append((fraction, time.perf_counter()))),
    )
    synchronize(work.device)
    started = time.perf_counter()
    train_students(setup, nets=nets, methods=["mpt-kl"] * students, params=[MethodParams(bias=b) for b in biases])
    synchronize(work.device)
    whole = time.perf_counter() - started
    images = steps * RECIPE.batch_size * students
    (first, first_at), (last, last_at) = polls[0], polls[-1]
    steady = (last - first) * images / (last_at - first_at) if last > first else images / whole
    return EngineRate(steady, images / whole)


def compute_only_run(
    work: Workload,
    *,
    steps: int,
) -> float:
    """images/s of the engine's own eager step on one fixed, already augmented batch: the model
    arithmetic alone, with no data work at all; no eager loop with this maths can beat it."""
    train_set, k, k_old, arch, device = work.train_set, work.k, work.k_old, work.arch, work.device
    in_channels = train_set.images.shape[1]
    memory_format = training_memory_format(device, RECIPE)
    method = get_method("mpt-kl")
    net = build_net(arch, num_classes=k, in_channels=in_channels, seed=1).to(device).to(memory_format=memory_format)
    optimizer = torch.optim.SGD(
        net.parameters(), lr=RECIPE.lr, momentum=RECIPE.momentum, weight_decay=RECIPE.weight_decay
    )
    student = Student(net.train(), [(method, MethodParams())], optimizer, torch.zeros(1, device=device))
    frozen = prepare_teachers(teachers_for(arch, k, k_old, in_channels), [method], device, memory_format)
    images = train_set.images[: RECIPE.batch_size].to(device)
    batch = augment(
        images, padding=RECIPE.crop_padding, flip=True, generator=torch.Generator(device=device).manual_seed(0)
    )
    mean_t = torch.tensor(work.mean, device=device).view(1, -1, 1, 1)
    std_t = torch.tensor(work.std, device=device).view(1, -1, 1, 1)
    x = ((batch.float() / 255 - mean_t) / std_t).contiguous(memory_format=memory_format)
    y, mask = train_set.labels[: RECIPE.batch_size].to(device), new_mask(k, k_old).to(device)
    bf16 = RECIPE.bf16_on_cuda
    synchronize(device)
    started = time.perf_counter()
    for _ in range(steps):
        optimizer_step(student, x, y, mask, teacher_logits(frozen, x, device, bf16), 0, device, bf16)
    float(student.loss_sum.sum())
    return steps * RECIPE.batch_size / (time.perf_counter() - started)


def interleaved_rates(
    common: Workload,
    contenders: list[str],
    *,
    steps: int,
    warmup: int,
    repeats: int,
    workers: int,
    context: str,
) -> tuple[dict[str, list[float]], list[float]]:
    """Each contender's images/s per student, per repeat, run in alternating order; and the
    reference's worker start-up times. Contenders: "reference", "compute", or a VARIANTS name."""
    for variant in contenders:  # warm the allocator, cuDNN and the kernels of every variant
        if variant in VARIANTS:
            engine_run(common, steps=2, changes=VARIANTS[variant][0], students=VARIANTS[variant][1])
    rates: dict[str, list[float]] = {name: [] for name in contenders}
    startups = []
    for repeat in range(repeats):
        for which in contenders if repeat % 2 == 0 else contenders[::-1]:
            if which == "reference":
                rate, startup = reference_run(common, steps=steps, warmup=warmup, workers=workers, context=context)
                startups.append(startup)
                shown = f"{rate:8.1f} images/s"
            elif which == "compute":
                rate = compute_only_run(common, steps=steps)
                shown = f"{rate:8.1f} images/s"
            else:
                changes, students = VARIANTS[which]
                measured = engine_run(common, steps=steps, changes=changes, students=students)
                rate = measured.steady
                shown = f"{rate:8.1f} images/s per student (whole call, set-up included: {measured.whole:.1f})"
            rates[which].append(rate)
            print(f"  repeat {repeat + 1} {which:>13}: {shown}", flush=True)
    return rates, startups


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="small_cnn", choices=["small_cnn", "resnet18"])
    parser.add_argument("--steps", type=int, default=40, help="timed steps (batches of 128) per run")
    parser.add_argument("--warmup", type=int, default=10, help="untimed reference steps after its workers start")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each loop, interleaved")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--variants", default="eager", help=f"engine variants, of {', '.join(VARIANTS)}")
    parser.add_argument("--compute-only", action="store_true", help="also time the engine's step on one fixed batch")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--context", default="spawn", choices=["spawn", "forkserver"])
    parser.add_argument(
        "--threads",
        type=int,
        help="torch intra-op threads of this process, for both loops "
        "(default: torch's choice); DataLoader workers always use 1",
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    variants = args.variants.split(",")
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variants {unknown}")

    train_set, k, k_old = workload(args.arch, (args.warmup + args.steps) * RECIPE.batch_size)
    mean, std = channel_stats(train_set.images)
    print(
        f"{args.arch}: {len(train_set)} images {tuple(train_set.images.shape[1:])}, K={k}, K_old={k_old}, MPT-KL, "
        f"batch {RECIPE.batch_size}; {args.steps} timed steps x {args.repeats} repeats; device {device} "
        f"({device_name(device)}); load average at start {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    common = Workload(train_set=train_set, k=k, k_old=k_old, arch=args.arch, mean=mean, std=std, device=device)
    contenders = ["reference", *variants, *(["compute"] if args.compute_only else [])]
    rates, startups = interleaved_rates(
        common,
        contenders,
        steps=args.steps,
        warmup=args.warmup,
        repeats=args.repeats,
        workers=args.workers,
        context=args.context,
    )
    reference = statistics.median(rates["reference"])
    print(
        f"reference loop (DataLoader x{args.workers} {args.context}, PIL + torchvision, float32 on {device}, "
        f".item() every step): {reference:.1f} images/s (median; worker start-up "
        f"{statistics.median(startups):.1f} s, not counted)"
    )
    for which in contenders[1:]:
        median = statistics.median(rates[which])
        pairs = ", ".join(f"{r / ref:.2f}" for r, ref in zip(rates[which], rates["reference"], strict=True))
        print(f"{which}: {median:.1f} images/s, {median / reference:.2f}x the reference (per repeat: {pairs})")
    print(f"load average at end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
