"""An image-folder data set made of Fashion-MNIST images saved as the photos users bring: mixed
sizes and modes (grey, RGB, palette, RGBA, EXIF-turned), colour as a whole."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from mpt.formats import FASHION_MNIST_CLASSES, load_dataset
from scripts.stack import Stack
from tests.engine.engine_support import write_photo_folder
from tests.integration.conftest import FASHION_MNIST

# A class name is a folder name: "T-shirt/top" is stored as "T-shirt-top".
FOLDERS = [name.replace("/", "-") for name in FASHION_MNIST_CLASSES]


def data_root(stack: Stack) -> Path:
    """The stack's own data root (its second FLIPGUARD_DATA_ROOTS entry), where a test writes data sets."""
    return Path(json.loads(stack.env["FLIPGUARD_DATA_ROOTS"])[1])


def photo_folder(root: Path, *, classes: int, train_per_class: int, test_per_class: int) -> Path:
    """Fashion-MNIST's first `classes` classes (folders FOLDERS[:classes]), the first
    `train_per_class` / `test_per_class` images of each per split, at random sizes (20..72 px),
    saved as grey PNG, RGB JPEG, palette PNG, RGBA PNG and EXIF-turned JPEG in turn: a colour
    data set (3 channels; the grey files are converted)."""
    bundle = load_dataset(FASHION_MNIST)
    splits = {}
    for name, part, per_class in (("train", bundle.train, train_per_class), ("test", bundle.test, test_per_class)):
        index = torch.cat([(part.labels == c).nonzero().flatten()[:per_class] for c in range(classes)])
        splits[name] = (part.images[index, 0].numpy(), part.labels[index].numpy())
    return write_photo_folder(root, splits, FOLDERS[:classes], seed=0)
