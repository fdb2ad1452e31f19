"""The on-disk data set formats the engine reads and the service registers."""

from __future__ import annotations

import enum


class DatasetFormat(enum.StrEnum):
    """A data set format; `mpt.data` has one loader per member, migration 0001 a CHECK of them."""

    FASHION_MNIST = "fashion-mnist"
    IMAGEFOLDER = "imagefolder"
    CIFAR = "cifar"
    NPZ = "npz"
