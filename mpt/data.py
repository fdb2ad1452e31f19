"""Image data sets as tensors and files: the samples of a split, decoding to the model's input,
digests, the class map of an update and normalisation. The on-disk formats are read by
`mpt.formats`; augmentation on the training device is `mpt.augment`.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Self

import torch
import torch.utils.data

from contracts.limits import duplicates
from mpt.images import ImageFileError, ImageHeader, fit_tensor, load_fitted, thumbnail

# Images per DataLoader batch when a whole set is decoded into memory.
DECODE_BATCH = 256


class DataError(ValueError):
    """A data set that cannot be read or does not fit the update."""


class LabelledSamples:
    """What every kind of image set shares: labels indexing `classes`, and the subsets made
    from labels alone (class selection, per-class limits, seeded splits)."""

    labels: torch.Tensor
    classes: list[str]

    def __len__(self) -> int:
        return int(self.labels.numel())

    def take(self, index: torch.Tensor) -> Self:
        """The samples at `index`, in that order."""
        return self.relabel(index, self.labels[index], self.classes)

    def relabel(self, index: torch.Tensor, labels: torch.Tensor, classes: list[str]) -> Self:
        """The samples at `index` with new labels over new class names."""
        raise NotImplementedError

    def select_classes(self, names: list[str]) -> Self:
        """Keep the samples of the named classes, relabelled to the order of `names`."""
        position = {name: index for index, name in enumerate(self.classes)}
        missing = [name for name in names if name not in position]
        if missing:
            raise DataError(f"classes not in the data set: {', '.join(missing)}")
        lookup = torch.full((len(self.classes),), -1, dtype=torch.long)
        for new_index, name in enumerate(names):
            lookup[position[name]] = new_index
        relabelled = lookup[self.labels]
        keep = relabelled >= 0
        return self.relabel(keep.nonzero().flatten(), relabelled[keep], list(names))

    def limit_per_class(self, count: int | None, *, seed: int) -> Self:
        """A seeded subset with at most `count` samples of each class (order kept)."""
        if count is None:
            return self
        order = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed))
        rank = torch.empty_like(order)
        shuffled = self.labels[order]
        # Rank of each sample within its class, in the shuffled order.
        for c in range(len(self.classes)):
            members = (shuffled == c).nonzero().flatten()
            rank[order[members]] = torch.arange(members.numel())
        return self.take((rank < count).nonzero().flatten())

    def split(self, fraction: float, *, seed: int) -> tuple[Self, Self]:
        """A seeded (rest, held-out) split; the held-out part is `fraction` of each class."""
        generator = torch.Generator().manual_seed(seed)
        held = []
        for c in range(len(self.classes)):
            members = (self.labels == c).nonzero().flatten()
            members = members[torch.randperm(members.numel(), generator=generator)]
            held.append(members[: round(members.numel() * fraction)])
        held_out = torch.zeros(len(self), dtype=torch.bool)
        held_out[torch.cat(held)] = True
        return self.take((~held_out).nonzero().flatten()), self.take(held_out.nonzero().flatten())

    def _check_labels(self, count: int) -> None:
        if self.labels.numel() != count:
            raise DataError(f"{count} images but {self.labels.numel()} labels")
        if self.labels.numel() and (self.labels.min() < 0 or self.labels.max() >= len(self.classes)):
            raise DataError(
                f"labels must lie in 0..{len(self.classes) - 1} for {len(self.classes)} classes, "
                f"found {int(self.labels.min())}..{int(self.labels.max())}"
            )


@dataclass
class ImageSet(LabelledSamples):
    """Images (N, C, H, W) uint8 in memory, labels (N,) int64 indexing `classes`."""

    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str]

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise DataError(f"images must be uint8 (N, C, H, W), got {self.images.dtype} {tuple(self.images.shape)}")
        self._check_labels(self.images.shape[0])

    @property
    def channels(self) -> int:
        return int(self.images.shape[1])

    @property
    def shape(self) -> tuple[int, int, int]:
        """(C, H, W) of every image."""
        return tuple(self.images.shape[1:])  # type: ignore[return-value]

    def relabel(self, index: torch.Tensor, labels: torch.Tensor, classes: list[str]) -> ImageSet:
        return ImageSet(self.images[index], labels, list(classes))

    def fitted(self, i: int, shape: tuple[int, int, int]) -> torch.Tensor:
        """Image `i` fitted to `shape` (C, H, W); itself when it has that shape already."""
        return fit_tensor(self.images[i], shape)


@dataclass
class ImageFiles(LabelledSamples):
    """Image files of any size and mode, read only when a batch needs them.

    `headers` come from each file's header; `channels` is the data set's (1 when every file
    of both splits is grey), so that its splits decode alike.
    """

    files: list[str]
    headers: list[ImageHeader]
    labels: torch.Tensor
    classes: list[str]
    channels: int

    def __post_init__(self) -> None:
        if len(self.headers) != len(self.files):
            raise DataError(f"{len(self.files)} files but {len(self.headers)} headers")
        self._check_labels(len(self.files))

    @property
    def shape(self) -> tuple[int, int, int] | None:
        """(C, H, W) when every image has the same size, else None."""
        sizes = {(h.height, h.width) for h in self.headers}
        return (self.channels, *sizes.pop()) if len(sizes) == 1 else None

    def relabel(self, index: torch.Tensor, labels: torch.Tensor, classes: list[str]) -> ImageFiles:
        picked = index.tolist()
        return ImageFiles(
            [self.files[i] for i in picked], [self.headers[i] for i in picked], labels, list(classes), self.channels
        )

    def fitted(self, i: int, shape: tuple[int, int, int]) -> torch.Tensor:
        """File `i` decoded and fitted to `shape` (C, H, W)."""
        try:
            return load_fitted(self.files[i], shape)
        except ImageFileError as error:
            raise DataError(str(error)) from None


class FittedImages(torch.utils.data.Dataset):
    """A set's samples fitted to one input shape (C, H, W), one at a time: what the streaming
    path's DataLoader workers decode, and what the resident path decodes once."""

    def __init__(self, samples: ImageSet | ImageFiles, shape: tuple[int, int, int]):
        self.samples = samples
        self.shape: tuple[int, int, int] = (shape[0], shape[1], shape[2])

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.samples.fitted(i, self.shape), int(self.samples.labels[i])

    @property
    def labels(self) -> torch.Tensor:
        return self.samples.labels

    @property
    def classes(self) -> list[str]:
        return self.samples.classes


def stack_batch(samples: list[tuple[torch.Tensor, int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """A DataLoader's collate: uint8 (B, C, H, W) and int64 labels."""
    return torch.stack([image for image, _ in samples]), torch.tensor([label for _, label in samples])


def decode_all(samples: ImageSet | ImageFiles, shape: tuple[int, int, int], *, workers: int = 0) -> ImageSet:
    """Every sample fitted to `shape`, in memory (the resident path); a set already in that
    shape is returned as it is, without a copy."""
    if isinstance(samples, ImageSet) and samples.shape == tuple(shape):
        return samples
    loader = torch.utils.data.DataLoader(
        FittedImages(samples, shape),
        batch_size=DECODE_BATCH,
        num_workers=workers,
        collate_fn=stack_batch,
    )
    images = torch.empty((len(samples), *shape), dtype=torch.uint8)
    start = 0
    for batch, _ in loader:
        images[start : start + batch.shape[0]] = batch
        start += batch.shape[0]
    return ImageSet(images, samples.labels.clone(), list(samples.classes))


def thumbnails(
    samples: ImageSet | ImageFiles | FittedImages, index: Sequence[int], shape: tuple[int, int, int], max_side: int
) -> torch.Tensor:
    """The samples at `index` fitted to `shape` (what a model of that input sees), scaled to
    at most `max_side` pixels a side: uint8 (M, C, h, w), small enough to store per flip."""
    fitted = FittedImages(samples.samples if isinstance(samples, FittedImages) else samples, shape)
    pixels = [thumbnail(fitted[i][0], max_side) for i in index]
    if not pixels:  # an empty stack of the thumbnails' shape
        return thumbnail(torch.zeros(shape, dtype=torch.uint8), max_side).unsqueeze(0)[:0]
    return torch.stack(pixels)


@dataclass
class DataBundle:
    """A registered data set: its training and evaluation splits and its content digest."""

    train: ImageSet | ImageFiles
    test: ImageSet | ImageFiles
    digest: str

    @property
    def classes(self) -> list[str]:
        return self.train.classes

    def describe(self) -> dict:
        """What inspection records: classes, split sizes, the common image shape (None when
        sizes differ) and a summary of sizes and modes."""
        return {
            "classes": list(self.classes),
            "train_size": len(self.train),
            "test_size": len(self.test),
            "image_shape": list(shape) if (shape := self.train.shape) and shape == self.test.shape else None,
            "image_summary": image_summary([self.train, self.test]),
            "digest": self.digest,
        }


def image_summary(parts: list[ImageSet | ImageFiles]) -> dict:
    """Channels, smallest and largest (height, width), and image counts per mode."""
    sizes: list[tuple[int, int]] = []
    modes: dict[str, int] = {}
    for part in parts:
        if isinstance(part, ImageSet):
            sizes.append((part.shape[1], part.shape[2]))
            mode = "L" if part.shape[0] == 1 else "RGB"
            modes[mode] = modes.get(mode, 0) + len(part)
        else:
            sizes.extend((h.height, h.width) for h in part.headers)
            for header in part.headers:
                modes[header.mode] = modes.get(header.mode, 0) + 1
    return {
        "channels": parts[0].channels,
        "min_size": list(min(sizes, key=math.prod)) if sizes else None,  # by area
        "max_size": list(max(sizes, key=math.prod)) if sizes else None,
        "modes": dict(sorted(modes.items())),
    }


def content_digest(train: ImageSet, test: ImageSet) -> str:
    digest = hashlib.sha256()
    for part in (train, test):
        digest.update(part.images.contiguous().numpy().data)  # hashed in place (a memoryview), not copied to bytes
        digest.update(part.labels.numpy().astype("<i8").tobytes())
    digest.update(json.dumps(train.classes).encode())
    return digest.hexdigest()


def files_digest(root: Path, train: ImageFiles, test: ImageFiles) -> str:
    """Hash of every file's bytes, its path under `root` and its label: a change on disk is
    seen without decoding a pixel."""
    digest = hashlib.sha256()
    for part in (train, test):
        for file, label in zip(part.files, part.labels.tolist(), strict=True):
            digest.update(json.dumps([str(Path(file).relative_to(root)), label]).encode())
            with open(file, "rb") as handle:
                for chunk in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(chunk)
    digest.update(json.dumps(train.classes).encode())
    return digest.hexdigest()


@dataclass(frozen=True)
class ClassMap:
    """The update's index space: the old classes at their old indices, new classes after."""

    classes: tuple[str, ...]
    k_old: int

    @property
    def new_classes(self) -> tuple[str, ...]:
        return self.classes[self.k_old :]

    def new_mask(self, device: torch.device | None = None) -> torch.Tensor:
        mask = torch.zeros(len(self.classes), dtype=torch.bool, device=device)
        mask[self.k_old :] = True
        return mask


def build_class_map(old_classes: list[str], data_classes: list[str]) -> ClassMap:
    """Old classes keep their positions (matched by name); the data's other classes follow."""
    for label, names in (("old model", old_classes), ("update data", data_classes)):
        twice = duplicates(names)
        if twice:
            raise DataError(f"duplicate class names in the {label}: {', '.join(twice)}")
    # Sets: linear in the number of classes.
    in_data, in_old = set(data_classes), set(old_classes)
    missing = [c for c in old_classes if c not in in_data]
    if missing:
        raise DataError(f"the update data lacks old classes: {', '.join(missing)}")
    new = [c for c in data_classes if c not in in_old]
    return ClassMap(tuple(old_classes) + tuple(new), len(old_classes))


def channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 images, on the 0..1 scale."""
    scaled = images.transpose(0, 1).flatten(1).double() / 255
    return tuple(scaled.mean(1).tolist()), tuple(scaled.std(1).clamp_min(1e-3).tolist())


def normalize(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 (N, C, H, W) -> float32 normalised, on the images' device."""
    mean_t = torch.tensor(mean, device=images.device).view(1, -1, 1, 1)
    std_t = torch.tensor(std, device=images.device).view(1, -1, 1, 1)
    return (images.float() / 255 - mean_t) / std_t
