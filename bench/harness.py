"""What the training benchmarks share: the recipe, the data, the frozen teachers and the
device's name. bench/paper_loop.py and bench/train_throughput.py train on it alike."""

from __future__ import annotations

import os
import platform
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from mpt.data import ImageSet
from mpt.formats import load_dataset
from mpt.nets import build_net
from mpt.recipe import Recipe
from mpt.train import Teachers

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
RECIPE = Recipe(epochs=1, batch_size=128, lr=0.1, momentum=0.9, weight_decay=5e-4, crop_padding=4)
SWEEP_BIASES = (0.0, 1.0, 2.0, 4.0)  # docs/METHOD.md's grid for b
OLD_TEACHER_SEED, REFERENCE_TEACHER_SEED = 101, 102  # both loops learn from the same teachers


def workload(
    arch: str, samples: int, *, seed: int = 0, fashion_mnist: str = FASHION_MNIST_DIR
) -> tuple[ImageSet, int, int]:
    """(ImageSet, K, K_old): Fashion-MNIST for small_cnn, synthetic CIFAR-100-shaped data for
    the ResNets (as in the H100 figures of docs/METHOD.md, "The reference training loop")."""
    if arch == "small_cnn":
        bundle = load_dataset(fashion_mnist)
        assert isinstance(bundle.train, ImageSet)  # load_dataset decodes
        return bundle.train.take(torch.arange(min(samples, len(bundle.train)))), 10, 5
    generator = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (samples, 3, 32, 32), dtype=torch.uint8, generator=generator)
    labels = torch.randint(0, 100, (samples,), generator=generator)
    return ImageSet(images, labels, [f"c{i}" for i in range(100)]), 100, 50


@dataclass(frozen=True)
class Workload:
    """What reference_run, engine_run and compute_only_run take alike: the data, its classes,
    the network and the device."""

    train_set: ImageSet
    k: int
    k_old: int
    arch: str
    mean: Sequence[float]
    std: Sequence[float]
    device: torch.device


def teachers_for(arch: str, k: int, k_old: int, in_channels: int) -> Teachers:
    return Teachers(
        old=build_net(arch, num_classes=k_old, in_channels=in_channels, seed=OLD_TEACHER_SEED).eval(),
        reference=build_net(arch, num_classes=k, in_channels=in_channels, seed=REFERENCE_TEACHER_SEED).eval(),
    )


def new_mask(k: int, k_old: int) -> torch.Tensor:
    return torch.arange(k) >= k_old


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}"
    return f"{os.cpu_count()} CPUs ({cpu_name()}), {torch.get_num_threads()} threads, torch {torch.__version__}"
