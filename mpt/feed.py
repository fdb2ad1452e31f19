"""The two data paths behind the one training loop.

Resident: the set is decoded and fitted once, held as uint8, and (for training) kept on the
device; a batch is a gather. Streaming: DataLoader workers decode and fit each batch's files
(into pinned memory on CUDA) and the batch is copied to the device. Both feed the loop the same
uint8 batches in the same order (the epoch's permutation, drawn on the device), and every
random augmentation happens on the device after that, so the two paths train alike.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from typing import TypedDict, Unpack

import torch
import torch.utils.data

from mpt.data import FittedImages, ImageFiles, ImageSet, channel_stats, decode_all, stack_batch
from mpt.recipe import Recipe

RESIDENT = "resident"
STREAMING = "streaming"
# Decoding processes when the recipe leaves it open: one per core, at most this many.
MAX_DEFAULT_WORKERS = 8

Prepared = ImageSet | FittedImages


def decode_workers(recipe: Recipe) -> int:
    """DataLoader processes for decoding: the recipe's number, else one per core (at most 8)."""
    if recipe.decode_workers is not None:
        return recipe.decode_workers
    return min(MAX_DEFAULT_WORKERS, os.cpu_count() or 1)


def available_host_bytes() -> int:
    """Memory the kernel can hand out now (MemAvailable), falling back to free pages."""
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def choose_data_path(
    requested: str,
    *,
    train: ImageSet | ImageFiles | None,
    others: list[ImageSet | ImageFiles],
    shape: tuple[int, int, int],
    device: torch.device,
    memory_fraction: float,
) -> str:
    """The recipe's data path, or for "auto" resident when the fitted sets fit: the training
    set (held on the device; None when only evaluating) in `memory_fraction` of the free
    device memory, and every set that must be decoded or resized in that fraction of the
    available host memory."""
    if requested != "auto":
        return requested
    per_image = math.prod(shape)
    host_needed = sum(
        len(part) * per_image
        for part in (train, *others)
        if part is not None and not (isinstance(part, ImageSet) and part.shape == tuple(shape))
    )
    if host_needed > memory_fraction * available_host_bytes():
        return STREAMING
    if train is not None and device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        if len(train) * per_image > memory_fraction * free:
            return STREAMING
    return RESIDENT


def prepare(samples: ImageSet | ImageFiles, shape: tuple[int, int, int], *, path: str, workers: int) -> Prepared:
    """A set fitted to `shape` for one data path: decoded into memory (resident; a set in
    memory at that shape already is returned as it is) or left to be decoded per batch
    (streaming)."""
    if path == STREAMING:
        return FittedImages(samples, shape)
    return decode_all(samples, shape, workers=workers)


def prepare_for_input(
    split: ImageSet | ImageFiles | FittedImages, shape: tuple[int, int, int], *, recipe: Recipe, device: torch.device
) -> Prepared:
    """A split ready to feed an input of `shape`: as it is when already prepared for it, else
    fitted on the recipe's data path (nothing of it is held on the device)."""
    if isinstance(split, ImageSet | FittedImages) and split.shape == tuple(shape):
        return split
    source = split.samples if isinstance(split, FittedImages) else split
    path = choose_data_path(
        recipe.data_path,
        train=None,
        others=[source],
        shape=shape,
        device=device,
        memory_fraction=recipe.resident_memory_fraction,
    )
    return prepare(source, shape, path=path, workers=decode_workers(recipe))


class _Batching(TypedDict, total=False):
    """How BatchFeed._loader's DataLoader batches: a fixed size or explicit index lists."""

    batch_size: int
    batch_sampler: list[list[int]]


class BatchFeed:
    """uint8 batches of a prepared set on one device, shuffled by a given order or in order.

    A resident set moves to the device once when `on_device` (training) and otherwise one
    batch at a time (evaluation); a streaming set is decoded per batch by `workers` processes.
    """

    def __init__(self, images: Prepared, device: torch.device, *, workers: int, on_device: bool):
        self.device = device
        self.workers = workers
        self.labels = images.labels.to(device)
        # Exactly one of the two: the uint8 images (on the device when `on_device`), or the
        # fitted files a DataLoader decodes.
        self.resident: torch.Tensor | None = None
        self.streamed: FittedImages | None = None
        if isinstance(images, ImageSet):
            self.resident = images.images.to(device) if on_device else images.images
        else:
            self.streamed = images

    def __len__(self) -> int:
        return int(self.labels.numel())

    def shuffled(self, order: torch.Tensor, batch_size: int) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
        """(step, images, labels) for each `batch_size` slice of `order`; a slice of a single
        sample is skipped (BatchNorm cannot train on it) but keeps its step number."""
        steps = [
            (step, order[start : start + batch_size])
            for step, start in enumerate(range(0, len(self), batch_size))
            if min(batch_size, len(self) - start) >= 2
        ]
        if self.resident is not None:
            for step, index in steps:
                yield step, self.resident[index].to(self.device, non_blocking=True), self.labels[index]
            return
        on_host = [index.tolist() for index in order.cpu().split(batch_size) if index.numel() >= 2]
        for (step, index), (images, _) in zip(steps, self._loader(batch_sampler=on_host), strict=True):
            yield step, images.to(self.device, non_blocking=True), self.labels[index]

    def in_order(self, batch_size: int) -> Iterator[torch.Tensor]:
        """The images in the set's order, `batch_size` at a time."""
        if self.resident is not None:
            for start in range(0, len(self), batch_size):
                yield self.resident[start : start + batch_size].to(self.device, non_blocking=True)
            return
        for images, _ in self._loader(batch_size=batch_size):
            yield images.to(self.device, non_blocking=True)

    def _loader(self, **batching: Unpack[_Batching]) -> torch.utils.data.DataLoader:
        assert self.streamed is not None
        return torch.utils.data.DataLoader(
            self.streamed,
            num_workers=self.workers,
            pin_memory=self.device.type == "cuda",
            collate_fn=stack_batch,
            **batching,
        )


def measure_channel_stats(images: Prepared, *, workers: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std on the 0..1 scale (mpt.data.channel_stats); a streaming set is
    summed batch by batch in float64 instead of held whole."""
    if isinstance(images, ImageSet):
        return channel_stats(images.images)
    channels = images.shape[0]
    total = torch.zeros(channels, dtype=torch.float64)
    squares = torch.zeros(channels, dtype=torch.float64)
    count = 0
    feed = BatchFeed(images, torch.device("cpu"), workers=workers, on_device=False)
    for batch in feed.in_order(1024):
        scaled = batch.transpose(0, 1).flatten(1).double() / 255
        total += scaled.sum(1)
        squares += (scaled * scaled).sum(1)
        count += scaled.shape[1]
    mean = total / count
    # Unbiased, as torch.std in channel_stats.
    variance = (squares - count * mean * mean) / max(count - 1, 1)
    return tuple(mean.tolist()), tuple(variance.clamp_min(0).sqrt().clamp_min(1e-3).tolist())
