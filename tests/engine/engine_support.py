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


PHOTO_KINDS = ("grey-png", "rgb-jpeg", "palette-png", "rgba-png", "exif-jpeg")


def save_photo(path_stem: Path, pixels: np.ndarray, kind: str) -> Path:
    """Save a grey (H, W) uint8 array as one kind of real-world file; returns its path.

    Colour kinds tint the image (so the data set is colour); "exif-jpeg" is stored turned by
    90 degrees with EXIF orientation 6, so that it decodes upright.
    """
    from PIL import Image

    grey = Image.fromarray(pixels)
    tinted = Image.merge("RGB", (grey, grey.point(lambda v: v * 3 // 4), grey.point(lambda v: v // 2)))
    if kind == "grey-png":
        path = path_stem.with_suffix(".png")
        grey.save(path)
    elif kind == "rgb-jpeg":
        path = path_stem.with_suffix(".jpg")
        tinted.save(path, quality=95)
    elif kind == "palette-png":
        path = path_stem.with_suffix(".png")
        tinted.convert("P", palette=Image.Palette.ADAPTIVE, colors=64).save(path, transparency=0)
    elif kind == "rgba-png":
        path = path_stem.with_suffix(".png")
        rgba = tinted.convert("RGBA")
        rgba.putalpha(255)
        rgba.save(path)
    elif kind == "exif-jpeg":
        path = path_stem.with_suffix(".jpeg")
        exif = Image.Exif()
        exif[0x0112] = 6  # "rotate 90 clockwise to view": stored turned counter-clockwise
        tinted.transpose(Image.Transpose.ROTATE_90).save(path, quality=95, exif=exif)
    else:
        raise ValueError(kind)
    return path


def write_photo_folder(
    root: Path,
    splits: dict[str, tuple[np.ndarray, np.ndarray]],
    classes: list[str],
    *,
    seed: int,
    sizes: tuple[int, int] = (20, 72),
) -> Path:
    """An ImageFolder (`<split>/<class>/<n>.<ext>`) of grey (N, H, W) images, each resized to a
    random height and width in `sizes` and saved as one of PHOTO_KINDS in turn."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for split, (images, labels) in splits.items():
        for name in classes:
            (root / split / name).mkdir(parents=True, exist_ok=True)
        for i, (pixels, label) in enumerate(zip(images, labels, strict=True)):
            height, width = (int(v) for v in rng.integers(sizes[0], sizes[1] + 1, size=2))
            resized = np.asarray(Image.fromarray(pixels).resize((width, height), Image.Resampling.BILINEAR))
            save_photo(root / split / classes[int(label)] / f"{i:05d}", resized, PHOTO_KINDS[i % len(PHOTO_KINDS)])
    return root
