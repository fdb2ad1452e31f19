"""The model file: safetensors weights whose metadata says how to rebuild and feed the network.

The engine writes and reads it (`mpt.artifacts`); the API validates uploads without torch
(`api.storage`).
"""

from __future__ import annotations

import enum


class MetadataKey(enum.StrEnum):
    """The metadata every model file carries; values other than `ARCH` are JSON."""

    ARCH = "flipguard.arch"
    CLASSES = "flipguard.classes"
    IN_CHANNELS = "flipguard.in_channels"
    IMAGE_SIZE = "flipguard.image_size"
    MEAN = "flipguard.mean"
    STD = "flipguard.std"


# The classifier weight of each architecture the engine builds (`mpt.nets.ARCHITECTURES`): one
# row per class, so the API can check a file's classes against its head without torch.
HEAD_WEIGHT_KEYS = {"small_cnn": "fc.weight", "resnet18": "fc.weight", "resnet34": "fc.weight", "resnet50": "fc.weight"}
