"""Training throughput: docs/METHOD.md's reference loop against the engine's `mpt.train.train`.

Both loops, in this one process, train the same fresh student with MPT-KL (mpt.losses) against
the same frozen old teacher (first half of the classes) and reference teacher (all classes),
batch 128, SGD lr 0.1 / momentum 0.9 / wd 5e-4, RandomCrop(pad 4) + horizontal flip +
normalisation, float32 on the CPU.

* reference: torch.utils.data.DataLoader with 4 workers ('spawn' context: torch has already
  run in this process, and forked workers can hang), each sample decoded to a PIL image and
  put through torchvision RandomCrop + RandomHorizontalFlip + ToTensor + Normalize; student,
  old teacher and reference teacher every step; the loss read back with `.item()` every step.
* engine: `mpt.train.train` (data resident on the device as uint8, batched augmentation,
  teachers prepared once and run without gradient, no per-step host sync).

Runs alternate (reference, engine, engine, reference, ...) so that other load on the machine
hits both alike; the figures are medians over the repeats. The reference is measured in its
steady state: its workers are started and warmed up before its clock starts (their start-up,
which the paper's loop pays every epoch, is printed separately, not counted).

    .venv/bin/python bench/train_throughput.py --arch small_cnn --steps 40 --repeats 3
    .venv/bin/python bench/train_throughput.py --arch resnet18 --steps 10 --repeats 3

On a small shared machine, run it at --threads 1 as well: with two intra-op threads on two
cores, any other busy process stalls every parallel region of both loops (OpenMP barriers),
and the measurement says more about the neighbour than about the loops.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import numpy as np
import torch

from mpt.data import ImageSet, channel_stats
from mpt.formats import load_dataset
from mpt.losses import LossInputs, get_method
from mpt.nets import build_net
from mpt.recipe import MethodParams, Recipe
from mpt.train import Teachers, TrainingSetup, train

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"


class PilDataset(torch.utils.data.Dataset):
    """The paper's data path: uint8 array -> PIL image -> torchvision transforms, per sample."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, mean, std, padding: int):
        self.images, self.labels = images, labels  # (N, H, W) grey or (N, H, W, 3)
        self.mean, self.std, self.padding = tuple(mean), tuple(std), padding
        self.transform = None  # built lazily in each worker

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i):
        from PIL import Image
        from torchvision import transforms as T

        if self.transform is None:
            size = self.images.shape[1]
            self.transform = T.Compose(
                [
                    T.RandomCrop(size, padding=self.padding),
                    T.RandomHorizontalFlip(),
                    T.ToTensor(),
                    T.Normalize(self.mean, self.std),
                ]
            )
        return self.transform(Image.fromarray(self.images[i])), int(self.labels[i])


def workload(arch: str, samples: int, seed: int = 0):
    """(ImageSet, K, K_old): Fashion-MNIST for small_cnn, synthetic CIFAR-100-shaped data for
    the ResNets (as in the H100 figures of docs/METHOD.md, "The reference training loop")."""
    if arch == "small_cnn":
        bundle = load_dataset(FASHION_MNIST_DIR)
        train_set = bundle.train.take(torch.arange(min(samples, len(bundle.train))))
        return train_set, 10, 5
    generator = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (samples, 3, 32, 32), dtype=torch.uint8, generator=generator)
    labels = torch.randint(0, 100, (samples,), generator=generator)
    return ImageSet(images, labels, [f"c{i}" for i in range(100)]), 100, 50


def teachers_for(arch: str, k: int, k_old: int, in_channels: int) -> Teachers:
    return Teachers(
        old=build_net(arch, num_classes=k_old, in_channels=in_channels, seed=101).eval(),
        reference=build_net(arch, num_classes=k, in_channels=in_channels, seed=102).eval(),
    )


def new_mask(k: int, k_old: int) -> torch.Tensor:
    mask = torch.zeros(k, dtype=torch.bool)
    mask[k_old:] = True
    return mask


RECIPE = Recipe(epochs=1, batch_size=128, lr=0.1, momentum=0.9, weight_decay=5e-4, crop_padding=4)


def reference_run(
    train_set: ImageSet,
    k: int,
    k_old: int,
    arch: str,
    mean,
    std,
    *,
    steps: int,
    warmup: int,
    workers: int,
    context: str,
) -> tuple[float, float]:
    """(images/s over `steps` timed steps after `warmup` untimed ones, worker start-up seconds)."""
    images = train_set.images.numpy()
    images = images[:, 0] if images.shape[1] == 1 else images.transpose(0, 2, 3, 1)
    dataset = PilDataset(np.ascontiguousarray(images), train_set.labels.numpy(), mean, std, RECIPE.crop_padding)
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=RECIPE.batch_size,
        shuffle=True,
        num_workers=workers,
        drop_last=True,
        multiprocessing_context=context if workers else None,
    )
    in_channels = train_set.images.shape[1]
    student = build_net(arch, num_classes=k, in_channels=in_channels, seed=1).train()
    teachers = teachers_for(arch, k, k_old, in_channels)
    optimizer = torch.optim.SGD(
        student.parameters(), lr=RECIPE.lr, momentum=RECIPE.momentum, weight_decay=RECIPE.weight_decay
    )
    method, params, mask = get_method("mpt-kl"), MethodParams(), new_mask(k, k_old)
    started = time.perf_counter()
    iterator = iter(loader)
    clock = None
    startup = 0.0
    for step in range(warmup + steps):
        x, y = next(iterator)
        if step == 0:
            startup = time.perf_counter() - started
        if step == warmup:
            clock = time.perf_counter()
        with torch.no_grad():
            old_logits = teachers.old(x)
            ref_logits = teachers.reference(x)
        logits = student(x)
        loss = method.loss(LossInputs(logits, y, mask, old_logits, ref_logits, None, 0), params)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        loss.item()  # the paper's loop reads the loss back every step
    elapsed = time.perf_counter() - clock
    del iterator  # shuts the workers down
    return steps * RECIPE.batch_size / elapsed, startup


def engine_run(
    train_set: ImageSet, k: int, k_old: int, arch: str, mean, std, *, steps: int, device: torch.device
) -> float:
    """images/s of one `mpt.train.train` epoch of `steps` batches (set-up included)."""
    subset = train_set.take(torch.arange(steps * RECIPE.batch_size))
    in_channels = train_set.images.shape[1]
    student = build_net(arch, num_classes=k, in_channels=in_channels, seed=1)
    teachers = teachers_for(arch, k, k_old, in_channels)
    if device.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    setup = TrainingSetup(
        train_set=subset,
        recipe=RECIPE,
        new_mask=new_mask(k, k_old),
        mean=mean,
        std=std,
        seed=0,
        teachers=teachers,
        device=device,
    )
    train(setup, net=student, method="mpt-kl", params=MethodParams())
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps * RECIPE.batch_size / (time.perf_counter() - started)


def compute_only_run(
    train_set: ImageSet, k: int, k_old: int, arch: str, mean, std, *, steps: int, device: torch.device
) -> float:
    """images/s of the engine's own step functions on one fixed, already augmented batch: the
    model arithmetic alone, with no data work at all; no loop with this maths can beat it."""
    from mpt.augment import augment
    from mpt.train import _memory_format, _prepare_teachers, _Student, _student_step, _teacher_logits

    in_channels = train_set.images.shape[1]
    fmt = _memory_format(device, RECIPE)
    method = get_method("mpt-kl")
    student = build_net(arch, num_classes=k, in_channels=in_channels, seed=1).to(device, memory_format=fmt).train()
    optimizer = torch.optim.SGD(
        student.parameters(), lr=RECIPE.lr, momentum=RECIPE.momentum, weight_decay=RECIPE.weight_decay
    )
    state = _Student(
        student, "mpt-kl", method, MethodParams(), optimizer, runner=student, loss_sum=torch.zeros((), device=device)
    )
    frozen = _prepare_teachers(teachers_for(arch, k, k_old, in_channels), [method], device, fmt)
    images = train_set.images[: RECIPE.batch_size].to(device)
    batch = augment(
        images, padding=RECIPE.crop_padding, flip=True, generator=torch.Generator(device=device).manual_seed(0)
    )
    mean_t = torch.tensor(mean, device=device).view(1, -1, 1, 1)
    std_t = torch.tensor(std, device=device).view(1, -1, 1, 1)
    x = ((batch.float() / 255 - mean_t) / std_t).contiguous(memory_format=fmt)
    y, mask = train_set.labels[: RECIPE.batch_size].to(device), new_mask(k, k_old).to(device)
    if device.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(steps):
        _student_step(
            state, x, y, mask, _teacher_logits(frozen, x, device, RECIPE.bf16_on_cuda), 0, device, RECIPE.bf16_on_cuda
        )
    float(state.loss_sum)
    return steps * RECIPE.batch_size / (time.perf_counter() - started)


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="small_cnn", choices=["small_cnn", "resnet18"])
    parser.add_argument("--steps", type=int, default=40, help="timed steps (batches of 128) per run")
    parser.add_argument("--warmup", type=int, default=10, help="untimed reference steps after its workers start")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each loop, interleaved")
    parser.add_argument("--device", default="cpu")
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
    train_set, k, k_old = workload(args.arch, (args.warmup + args.steps) * RECIPE.batch_size)
    mean, std = channel_stats(train_set.images)
    print(
        f"{args.arch}: {len(train_set)} images {tuple(train_set.images.shape[1:])}, K={k}, K_old={k_old}, MPT-KL, "
        f"batch {RECIPE.batch_size}; {args.steps} timed steps x {args.repeats} repeats; device {device}; "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs ({cpu_name()}); "
        f"load average at start {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    engine_run(train_set, k, k_old, args.arch, mean, std, steps=2, device=device)  # warm the allocator and kernels
    reference, engine, ceiling, startups = [], [], [], []
    for repeat in range(args.repeats):
        order = ("reference", "engine", "compute") if repeat % 2 == 0 else ("compute", "engine", "reference")
        for which in order:
            if which == "reference":
                rate, startup = reference_run(
                    train_set,
                    k,
                    k_old,
                    args.arch,
                    mean,
                    std,
                    steps=args.steps,
                    warmup=args.warmup,
                    workers=args.workers,
                    context=args.context,
                )
                reference.append(rate)
                startups.append(startup)
            elif which == "engine":
                rate = engine_run(train_set, k, k_old, args.arch, mean, std, steps=args.steps, device=device)
                engine.append(rate)
            else:
                rate = compute_only_run(train_set, k, k_old, args.arch, mean, std, steps=args.steps, device=device)
                ceiling.append(rate)
            print(f"  repeat {repeat + 1} {which:>9}: {rate:8.1f} images/s", flush=True)
    ref_median, engine_median = statistics.median(reference), statistics.median(engine)
    print(
        f"reference loop (DataLoader x{args.workers} {args.context}, PIL + torchvision, float32, .item() every step): "
        f"{ref_median:.1f} images/s (median; worker start-up {statistics.median(startups):.1f} s, not counted)"
    )
    print(f"engine loop (mpt.train.train): {engine_median:.1f} images/s (median)")
    ceiling_median = statistics.median(ceiling)
    print(
        f"compute only (engine's step on one fixed batch, no data work): {ceiling_median:.1f} images/s (median); "
        f"the most any loop with this maths could reach is {ceiling_median / ref_median:.2f}x the reference; "
        f"the engine loop runs at {engine_median / ceiling_median:.0%} of it"
    )
    pair_ratios = [e / r for e, r in zip(engine, reference, strict=True)]
    print(
        f"ratio engine / reference: {engine_median / ref_median:.2f}x "
        f"(per repeat: {', '.join(f'{r:.2f}' for r in pair_ratios)}); load average at end {os.getloadavg()[0]:.2f}"
    )


if __name__ == "__main__":
    main()
