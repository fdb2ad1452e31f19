"""Image data sets as uint8 tensors: loaders for four on-disk formats, class subsets by name,
seeded splits, the class map of an update, and batch augmentation on the training device."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import pickle
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from contracts.data_formats import DatasetFormat

FASHION_MNIST_CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


class DataError(ValueError):
    """A data set that cannot be read or does not fit the update."""


@dataclass
class ImageSet:
    """Images (N, C, H, W) uint8, labels (N,) int64 indexing `classes`."""

    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str]

    def __post_init__(self):
        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise DataError(f"images must be uint8 (N, C, H, W), got {self.images.dtype} {tuple(self.images.shape)}")
        if self.labels.numel() != self.images.shape[0]:
            raise DataError(f"{self.images.shape[0]} images but {self.labels.numel()} labels")
        if self.labels.numel() and (self.labels.min() < 0 or self.labels.max() >= len(self.classes)):
            raise DataError(
                f"labels must lie in 0..{len(self.classes) - 1} for {len(self.classes)} classes, "
                f"found {int(self.labels.min())}..{int(self.labels.max())}"
            )

    def __len__(self) -> int:
        return int(self.labels.numel())

    def take(self, index: torch.Tensor) -> ImageSet:
        return ImageSet(self.images[index], self.labels[index], list(self.classes))

    def select_classes(self, names: list[str]) -> ImageSet:
        """Keep the samples of the named classes, relabelled to the order of `names`."""
        missing = [name for name in names if name not in self.classes]
        if missing:
            raise DataError(f"classes not in the data set: {', '.join(missing)}")
        lookup = torch.full((len(self.classes),), -1, dtype=torch.long)
        for new_index, name in enumerate(names):
            lookup[self.classes.index(name)] = new_index
        relabelled = lookup[self.labels]
        keep = relabelled >= 0
        return ImageSet(self.images[keep], relabelled[keep], list(names))

    def limit_per_class(self, count: int | None, *, seed: int) -> ImageSet:
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

    def split(self, fraction: float, *, seed: int) -> tuple[ImageSet, ImageSet]:
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


@dataclass
class DataBundle:
    """A registered data set: its training and evaluation splits and its content digest."""

    train: ImageSet
    test: ImageSet
    digest: str

    @property
    def classes(self) -> list[str]:
        return self.train.classes

    def describe(self) -> dict:
        return {
            "classes": list(self.classes),
            "train_size": len(self.train),
            "test_size": len(self.test),
            "image_shape": list(self.train.images.shape[1:]),
            "digest": self.digest,
        }


def content_digest(train: ImageSet, test: ImageSet) -> str:
    digest = hashlib.sha256()
    for part in (train, test):
        digest.update(part.images.contiguous().numpy().tobytes())
        digest.update(part.labels.numpy().astype("<i8").tobytes())
    digest.update(json.dumps(train.classes).encode())
    return digest.hexdigest()


def detect_format(path: Path) -> DatasetFormat:
    """Guess a data set's format from its files."""
    if path.is_file() and path.suffix == ".npz":
        return DatasetFormat.NPZ
    if path.is_dir():
        names = {p.name for p in path.iterdir()}
        if any(n.startswith("train-images-idx3-ubyte") for n in names):
            return DatasetFormat.FASHION_MNIST
        if ({"train", "test", "meta"} <= names and (path / "meta").is_file()) or "cifar-100-python" in names:
            return DatasetFormat.CIFAR
        if (path / "train").is_dir():
            return DatasetFormat.IMAGEFOLDER
    raise DataError(f"cannot tell the format of {path}; name one of {', '.join(DatasetFormat)}")


def _refuse_links_outside(root: Path) -> None:
    """A data set folder may not reach outside itself through symbolic links: the service
    checks only the folder against its allowed roots."""
    top = root.resolve()
    for folder, subfolders, files in os.walk(root):
        for name in (*subfolders, *files):
            entry = Path(folder, name)
            if entry.is_symlink() and not entry.resolve().is_relative_to(top):
                raise DataError(f"{entry} links outside the data set folder ({entry.resolve()})")


def load_dataset(uri: str | Path, data_format: str | None = None) -> DataBundle:
    """Read a data set from disk into uint8 tensors with its ordered class names."""
    path = Path(uri)
    if not path.exists():
        raise DataError(f"no data set at {path}")
    if path.is_dir():
        _refuse_links_outside(path)
    data_format = data_format or detect_format(path)
    if data_format not in LOADERS:
        raise DataError(f"unknown format {data_format!r}; expected one of {', '.join(DatasetFormat)}")
    train, test = LOADERS[data_format](path)
    if train.classes != test.classes:
        raise DataError("the training and evaluation splits name different classes")
    if train.images.shape[1:] != test.images.shape[1:]:
        raise DataError("the training and evaluation splits have different image shapes")
    duplicates = sorted({c for c in train.classes if train.classes.count(c) > 1})
    if duplicates:
        raise DataError(f"duplicate class names in the data set: {', '.join(duplicates)}")
    return DataBundle(train, test, content_digest(train, test))


def _read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        raw = handle.read()
    zero, dtype_code, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype_code != 0x08:
        raise DataError(f"{path} is not an unsigned-byte idx file")
    shape = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def _idx_file(root: Path, stem: str) -> Path:
    for candidate in (root / stem, root / f"{stem}.gz"):
        if candidate.exists():
            return candidate
    raise DataError(f"missing {stem}[.gz] in {root}")


def _load_fashion_mnist(root: Path) -> tuple[ImageSet, ImageSet]:
    splits = []
    for prefix in ("train", "t10k"):
        images = _read_idx(_idx_file(root, f"{prefix}-images-idx3-ubyte"))
        labels = _read_idx(_idx_file(root, f"{prefix}-labels-idx1-ubyte"))
        splits.append(
            ImageSet(
                torch.from_numpy(images.copy()).unsqueeze(1),
                torch.from_numpy(labels.astype(np.int64)),
                list(FASHION_MNIST_CLASSES),
            )
        )
    return splits[0], splits[1]


def _load_imagefolder(root: Path) -> tuple[ImageSet, ImageSet]:
    from PIL import Image

    split_dirs = [root / "train", root / "test"]
    for split_dir in split_dirs:
        if not split_dir.is_dir():
            raise DataError(f"an imagefolder data set needs {split_dir}/<class>/<image> files")
    classes = sorted(p.name for p in split_dirs[0].iterdir() if p.is_dir())
    splits = []
    for split_dir in split_dirs:
        arrays, labels = [], []
        for index, name in enumerate(classes):
            for file in sorted((split_dir / name).glob("*")):
                if file.suffix.lower() not in IMAGE_SUFFIXES:
                    continue
                with Image.open(file) as image:
                    arrays.append(np.asarray(image.convert("RGB")))
                labels.append(index)
        if not arrays:
            raise DataError(f"no images under {split_dir}")
        shapes = {a.shape for a in arrays}
        if len(shapes) > 1:
            raise DataError(f"images under {split_dir} differ in size: {sorted(shapes)[:3]}")
        stacked = np.stack(arrays)
        images = torch.from_numpy(stacked).permute(0, 3, 1, 2).contiguous()
        if all(np.array_equal(stacked[..., 0], stacked[..., k]) for k in (1, 2)):
            images = images[:, :1].contiguous()  # grey images stay one channel
        splits.append(ImageSet(images, torch.tensor(labels, dtype=torch.long), list(classes)))
    return splits[0], splits[1]


class _ArrayUnpickler(pickle.Unpickler):
    """CIFAR's pickles hold dicts of lists, bytes and numpy arrays; nothing else may load."""

    ALLOWED = frozenset(
        {
            ("numpy.core.multiarray", "_reconstruct"),
            ("numpy._core.multiarray", "_reconstruct"),
            ("numpy", "ndarray"),
            ("numpy", "dtype"),
            ("numpy.core.multiarray", "scalar"),
            ("numpy._core.multiarray", "scalar"),
            ("_codecs", "encode"),
        }
    )

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise DataError(f"refusing to load {module}.{name} from a CIFAR pickle")
        return super().find_class(module, name)


def _read_cifar_pickle(path: Path) -> dict:
    if not path.is_file():
        raise DataError(f"missing CIFAR-100 file {path}")
    with open(path, "rb") as handle:
        raw = _ArrayUnpickler(io.BufferedReader(handle), encoding="bytes").load()
    return {(k.decode() if isinstance(k, bytes) else k): v for k, v in raw.items()}


def _load_cifar100(root: Path) -> tuple[ImageSet, ImageSet]:
    if (root / "cifar-100-python").is_dir():
        root = root / "cifar-100-python"
    meta = _read_cifar_pickle(root / "meta")
    classes = [n.decode() if isinstance(n, bytes) else n for n in meta["fine_label_names"]]
    splits = []
    for name in ("train", "test"):
        part = _read_cifar_pickle(root / name)
        data = np.asarray(part["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
        labels = np.asarray(part["fine_labels"], dtype=np.int64)
        splits.append(ImageSet(torch.from_numpy(data.copy()), torch.from_numpy(labels), list(classes)))
    return splits[0], splits[1]


def _load_npz(path: Path) -> tuple[ImageSet, ImageSet]:
    with np.load(path, allow_pickle=False) as arrays:
        required = {"x_train", "y_train", "x_test", "y_test", "classes"}
        missing = sorted(required - set(arrays.files))
        if missing:
            raise DataError(f"{path} lacks arrays: {', '.join(missing)}")
        classes = [str(c) for c in arrays["classes"].tolist()]
        splits = []
        for x_key, y_key in (("x_train", "y_train"), ("x_test", "y_test")):
            images = arrays[x_key]
            if images.dtype != np.uint8:
                raise DataError(f"{x_key} must be uint8, got {images.dtype}")
            if images.ndim == 3:
                images = images[:, None]
            elif images.ndim == 4 and images.shape[-1] in (1, 3) and images.shape[1] not in (1, 3):
                images = images.transpose(0, 3, 1, 2)
            if images.ndim != 4:
                raise DataError(f"{x_key} must be (N, H, W), (N, H, W, C) or (N, C, H, W)")
            splits.append(
                ImageSet(
                    torch.from_numpy(np.ascontiguousarray(images)),
                    torch.from_numpy(arrays[y_key].astype(np.int64)),
                    list(classes),
                )
            )
    return splits[0], splits[1]


# One loader per contract format (tests/engine/test_data.py checks that none is missing).
LOADERS = {
    DatasetFormat.FASHION_MNIST: _load_fashion_mnist,
    DatasetFormat.IMAGEFOLDER: _load_imagefolder,
    DatasetFormat.CIFAR: _load_cifar100,
    DatasetFormat.NPZ: _load_npz,
}


@dataclass(frozen=True)
class ClassMap:
    """The update's index space: the old classes at their old indices, new classes after."""

    classes: tuple[str, ...]
    k_old: int

    @property
    def new_classes(self) -> tuple[str, ...]:
        return self.classes[self.k_old :]

    def new_mask(self, device=None) -> torch.Tensor:
        mask = torch.zeros(len(self.classes), dtype=torch.bool, device=device)
        mask[self.k_old :] = True
        return mask


def build_class_map(old_classes: list[str], data_classes: list[str]) -> ClassMap:
    """Old classes keep their positions (matched by name); the data's other classes follow."""
    for label, names in (("old model", old_classes), ("update data", data_classes)):
        duplicates = sorted({c for c in names if names.count(c) > 1})
        if duplicates:
            raise DataError(f"duplicate class names in the {label}: {', '.join(duplicates)}")
    missing = [c for c in old_classes if c not in data_classes]
    if missing:
        raise DataError(f"the update data lacks old classes: {', '.join(missing)}")
    new = [c for c in data_classes if c not in old_classes]
    return ClassMap(tuple(old_classes) + tuple(new), len(old_classes))


def channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 images, on the 0..1 scale."""
    scaled = images.transpose(0, 1).flatten(1).double() / 255
    return tuple(scaled.mean(1).tolist()), tuple(scaled.std(1).clamp_min(1e-3).tolist())


def normalize(images: torch.Tensor, mean, std) -> torch.Tensor:
    """uint8 (N, C, H, W) -> float32 normalised, on the images' device."""
    mean_t = torch.tensor(mean, device=images.device).view(1, -1, 1, 1)
    std_t = torch.tensor(std, device=images.device).view(1, -1, 1, 1)
    return (images.float() / 255 - mean_t) / std_t


def augment(images: torch.Tensor, *, padding: int, flip: bool, generator: torch.Generator) -> torch.Tensor:
    """Per-sample random crop after zero padding and per-sample horizontal flip, batched.

    Works on the batch's device with one gather; `generator` must live on that device.
    """
    batch, _, height, width = images.shape
    device = images.device
    if padding:
        padded = F.pad(images, (padding, padding, padding, padding))
        dy = torch.randint(0, 2 * padding + 1, (batch,), device=device, generator=generator)
        dx = torch.randint(0, 2 * padding + 1, (batch,), device=device, generator=generator)
        rows = (dy[:, None] + torch.arange(height, device=device))[:, None, :, None]
        cols = (dx[:, None] + torch.arange(width, device=device))[:, None, None, :]
        samples = torch.arange(batch, device=device)[:, None, None, None]
        channels = torch.arange(images.shape[1], device=device)[None, :, None, None]
        images = padded[samples, channels, rows, cols]
    if flip:
        flipped = torch.rand(batch, device=device, generator=generator) < 0.5
        images = torch.where(flipped[:, None, None, None], images.flip(3), images)
    return images
