"""Helpers for the engine's tests: synthetic images and Fashion-MNIST-format idx files."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write a uint8 array as a gzip'd idx file (the Fashion-MNIST on-disk format)."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as handle:
        handle.write(header + array.tobytes())


def synthetic_images(per_class: int, classes: int, *, seed: int, size: int = 28) -> tuple[np.ndarray, np.ndarray]:
    """Learnable grey images: class c has a bright bar at a class-specific row, plus noise."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(classes), per_class)
    rng.shuffle(labels)
    images = rng.integers(0, 60, size=(labels.size, size, size), dtype=np.uint8)
    for i, c in enumerate(labels):
        row = 2 + (c * (size - 6)) // max(classes - 1, 1)
        images[i, row : row + 3, 3 : size - 3] = 200 + rng.integers(0, 55)
    return images, labels.astype(np.uint8)


def write_fashion_mnist_dir(
    root: Path, train: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray]
) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for prefix, (images, labels) in (("train", train), ("t10k", test)):
        write_idx(root / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(root / f"{prefix}-labels-idx1-ubyte.gz", labels)
    return root
