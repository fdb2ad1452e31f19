"""Image data sets as uint8 tensors: loaders for four on-disk formats, class subsets by name,
seeded splits, the class map of an update, and batch augmentation on the training device.

Every loader works within `DataLimits` (bytes, images, pixels per image, classes): sizes are
read from headers (npz and idx headers, image dimensions, file sizes) and checked before
anything that large is allocated or decoded, so a hostile data set is a DataError naming the
limit, never an allocation that kills the process.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import math
import os
import pickle
import struct
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from contracts.data_formats import DatasetFormat
from contracts.limits import MAX_CLASS_NAME_CHARS, MAX_CLASSES, duplicates

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
# What a damaged file makes the readers (zipfile, numpy, pickle, struct) raise.
UNREADABLE = (
    OSError,
    ValueError,
    EOFError,
    KeyError,
    IndexError,
    TypeError,
    RecursionError,
    zipfile.BadZipFile,
    struct.error,
    pickle.UnpicklingError,
)
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


class DataError(ValueError):
    """A data set that cannot be read or does not fit the update."""


@dataclass(frozen=True)
class DataLimits:
    """What a loader may read. The service fills it from its settings and names them in
    `names` ({field: setting name}) so that an error says which setting to raise."""

    # Decoded bytes of every array of both splits (images, labels, class names).
    max_bytes: int = 4 * 1024**3
    # Images of both splits together.
    max_images: int = 2_000_000
    # Height x width of one image (Pillow's MAX_IMAGE_PIXELS is set to this while decoding).
    max_image_pixels: int = 4096 * 4096
    max_classes: int = MAX_CLASSES
    names: tuple[tuple[str, str], ...] = ()

    def exceeded(self, field: str, what: str) -> DataError:
        name = dict(self.names).get(field, field)
        return DataError(f"{what}: more than the limit of {getattr(self, field)} ({name})")


class _Budget:
    """Running totals of one load against its limits."""

    def __init__(self, limits: DataLimits):
        self.limits = limits
        self.bytes = 0
        self.images = 0

    def spend(self, nbytes: int, what: str) -> None:
        self.bytes += nbytes
        if self.bytes > self.limits.max_bytes:
            raise self.limits.exceeded("max_bytes", f"{what} brings the data set to {self.bytes} bytes")

    def count_images(self, count: int, what: str) -> None:
        self.images += count
        if self.images > self.limits.max_images:
            raise self.limits.exceeded("max_images", f"{what} brings the data set to {self.images} images")

    def check_pixels(self, height: int, width: int, what: str) -> None:
        if height * width > self.limits.max_image_pixels:
            raise self.limits.exceeded("max_image_pixels", f"{what} is {width}x{height} pixels")

    def check_classes(self, count: int, what: str) -> None:
        if count > self.limits.max_classes:
            raise self.limits.exceeded("max_classes", f"{what} names {count} classes")


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
        position = {name: index for index, name in enumerate(self.classes)}
        missing = [name for name in names if name not in position]
        if missing:
            raise DataError(f"classes not in the data set: {', '.join(missing)}")
        lookup = torch.full((len(self.classes),), -1, dtype=torch.long)
        for new_index, name in enumerate(names):
            lookup[position[name]] = new_index
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
        digest.update(part.images.contiguous().numpy())  # hashed in place, not copied to bytes
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


def _refuse_links_outside(root: Path, limits: DataLimits) -> None:
    """A data set folder may not reach outside itself through symbolic links: the service
    checks only the folder against its allowed roots. Walking stops past a bounded number of
    entries (images, class folders and a few more)."""
    top = root.resolve()
    budget = limits.max_images + 2 * limits.max_classes + 64
    for folder, subfolders, files in os.walk(root):
        budget -= len(subfolders) + len(files)
        if budget < 0:
            raise limits.exceeded("max_images", f"{root} holds more files and folders than that allows")
        for name in (*subfolders, *files):
            entry = Path(folder, name)
            if entry.is_symlink() and not entry.resolve().is_relative_to(top):
                raise DataError(f"{entry} links outside the data set folder ({entry.resolve()})")


def load_dataset(uri: str | Path, data_format: str | None = None, *, limits: DataLimits | None = None) -> DataBundle:
    """Read a data set from disk into uint8 tensors with its ordered class names, within
    `limits` (default: DataLimits()); any unreadable input is a DataError."""
    limits = limits or DataLimits()
    path = Path(uri)
    if not path.exists():
        raise DataError(f"no data set at {path}")
    if path.is_dir():
        _refuse_links_outside(path, limits)
    data_format = data_format or detect_format(path)
    if data_format not in LOADERS:
        raise DataError(f"unknown format {data_format!r}; expected one of {', '.join(DatasetFormat)}")
    try:
        train, test = LOADERS[data_format](path, _Budget(limits))
    except DataError:
        raise
    except MemoryError:
        raise DataError(f"{path}: ran out of memory while loading it (lower the data set limits)") from None
    except UNREADABLE as error:
        raise DataError(f"{path} is not a readable {data_format} data set ({type(error).__name__}: {error})") from None
    if train.classes != test.classes:
        raise DataError("the training and evaluation splits name different classes")
    if train.images.shape[1:] != test.images.shape[1:]:
        raise DataError("the training and evaluation splits have different image shapes")
    twice = duplicates(train.classes)
    if twice:
        raise DataError(f"duplicate class names in the data set: {', '.join(twice)}")
    return DataBundle(train, test, content_digest(train, test))


def _read_idx(path: Path, budget: _Budget) -> np.ndarray:
    """An idx file: its header's shape is checked against the limits before the data is read,
    and exactly that many bytes are read (a gzip bomb stops there)."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        head = handle.read(4)
        if len(head) != 4:
            raise DataError(f"{path} is too short for an idx file")
        zero, dtype_code, ndim = struct.unpack(">HBB", head)
        if zero != 0 or dtype_code != 0x08 or not 1 <= ndim <= 4:
            raise DataError(f"{path} is not an unsigned-byte idx file")
        dims = handle.read(4 * ndim)
        if len(dims) != 4 * ndim:
            raise DataError(f"{path} is too short for its idx header")
        shape = struct.unpack(f">{ndim}I", dims)
        budget.spend(math.prod(shape), f"{path.name} declares shape {shape}")
        if ndim == 3:
            budget.count_images(shape[0], f"{path.name}")
            budget.check_pixels(shape[1], shape[2], f"an image of {path.name}")
        raw = handle.read(math.prod(shape) + 1)
    if len(raw) != math.prod(shape):
        raise DataError(f"{path} holds {len(raw)} data bytes where its header declares {math.prod(shape)}")
    return np.frombuffer(raw, dtype=np.uint8).reshape(shape)


def _idx_file(root: Path, stem: str) -> Path:
    for candidate in (root / stem, root / f"{stem}.gz"):
        if candidate.exists():
            return candidate
    raise DataError(f"missing {stem}[.gz] in {root}")


def _load_fashion_mnist(root: Path, budget: _Budget) -> tuple[ImageSet, ImageSet]:
    splits = []
    for prefix in ("train", "t10k"):
        images = _read_idx(_idx_file(root, f"{prefix}-images-idx3-ubyte"), budget)
        labels = _read_idx(_idx_file(root, f"{prefix}-labels-idx1-ubyte"), budget)
        if images.ndim != 3 or labels.ndim != 1:
            raise DataError(f"{root}: {prefix} images must be (N, H, W) and labels (N,)")
        splits.append(
            ImageSet(
                torch.from_numpy(images.copy()).unsqueeze(1),
                torch.from_numpy(labels.astype(np.int64)),
                list(FASHION_MNIST_CLASSES),
            )
        )
    return splits[0], splits[1]


def _read_image(file: Path, budget: _Budget) -> np.ndarray:
    """One image as (H, W, 3) uint8; its size is checked from its header before it is decoded."""
    from PIL import Image

    if not file.is_file():
        raise DataError(f"{file} is not a regular file")
    # Pillow refuses (DecompressionBombError) or warns past MAX_IMAGE_PIXELS when it opens a
    # file; the warning is an error here too.
    Image.MAX_IMAGE_PIXELS = budget.limits.max_image_pixels
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(file) as image:
                width, height = image.size
                budget.check_pixels(height, width, str(file))
                budget.spend(width * height * 3, str(file))
                return np.asarray(image.convert("RGB"))
    except DataError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise budget.limits.exceeded("max_image_pixels", f"{file} ({error})") from None
    except MemoryError:
        raise DataError(f"{file}: ran out of memory decoding it") from None
    except Exception as error:  # Pillow raises many kinds for a broken file: each is the file's fault
        raise DataError(f"{file} is not a readable image ({type(error).__name__}: {error})") from None


def _load_imagefolder(root: Path, budget: _Budget) -> tuple[ImageSet, ImageSet]:
    split_dirs = [root / "train", root / "test"]
    for split_dir in split_dirs:
        if not split_dir.is_dir():
            raise DataError(f"an imagefolder data set needs {split_dir}/<class>/<image> files")
    classes = sorted(p.name for p in split_dirs[0].iterdir() if p.is_dir())
    budget.check_classes(len(classes), str(split_dirs[0]))
    splits = []
    for split_dir in split_dirs:
        listing = []
        for index, name in enumerate(classes):
            files = [file for file in sorted((split_dir / name).glob("*")) if file.suffix.lower() in IMAGE_SUFFIXES]
            budget.count_images(len(files), f"{split_dir / name}")
            listing += [(file, index) for file in files]
        arrays, labels = [], []
        for file, index in listing:
            arrays.append(_read_image(file, budget))
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

    ALLOWED: ClassVar[set[tuple[str, str]]] = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("_codecs", "encode"),
    }

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise DataError(f"refusing to load {module}.{name} from a CIFAR pickle")
        return super().find_class(module, name)


def _read_cifar_pickle(path: Path, budget: _Budget) -> dict:
    if not path.is_file():
        raise DataError(f"missing CIFAR-100 file {path}")
    # A pickle holds its arrays' bytes: its size bounds what it decodes to.
    budget.spend(path.stat().st_size, f"{path.name} ({path.stat().st_size} bytes on disk)")
    with open(path, "rb") as handle:
        raw = _ArrayUnpickler(io.BufferedReader(handle), encoding="bytes").load()
    return {(k.decode() if isinstance(k, bytes) else k): v for k, v in raw.items()}


def _load_cifar100(root: Path, budget: _Budget) -> tuple[ImageSet, ImageSet]:
    if (root / "cifar-100-python").is_dir():
        root = root / "cifar-100-python"
    meta = _read_cifar_pickle(root / "meta", budget)
    classes = [n.decode() if isinstance(n, bytes) else n for n in meta["fine_label_names"]]
    budget.check_classes(len(classes), "meta")
    splits = []
    for name in ("train", "test"):
        part = _read_cifar_pickle(root / name, budget)
        data = np.asarray(part["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
        budget.count_images(data.shape[0], name)
        labels = np.asarray(part["fine_labels"], dtype=np.int64)
        splits.append(ImageSet(torch.from_numpy(data.copy()), torch.from_numpy(labels), list(classes)))
    return splits[0], splits[1]


def _npy_header(archive: np.lib.npyio.NpzFile, key: str) -> tuple[tuple[int, ...], np.dtype]:
    """The shape and dtype an array of the archive declares, read from its .npy header only."""
    names = archive.zip.namelist()
    member = f"{key}.npy" if f"{key}.npy" in names else key
    with archive.zip.open(member) as handle:
        version = np.lib.format.read_magic(handle)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(handle)
        elif version == (2, 0):
            shape, _, dtype = np.lib.format.read_array_header_2_0(handle)
        else:
            raise DataError(f"{key}: unsupported .npy format version {version}")
    return tuple(shape), dtype


def _check_npz_headers(arrays: np.lib.npyio.NpzFile, budget: _Budget) -> None:
    """Every array's declared size, count and type against the limits, before any is loaded."""
    headers = {key: _npy_header(arrays, key) for key in ("x_train", "y_train", "x_test", "y_test", "classes")}
    for key, (shape, dtype) in headers.items():
        budget.spend(math.prod(shape) * dtype.itemsize, f"{key} declares shape {shape} of {dtype}")
    shape, dtype = headers["classes"]
    if dtype.kind not in "US" or len(shape) != 1 or dtype.itemsize > 4 * MAX_CLASS_NAME_CHARS:
        raise DataError(f"classes must be a 1-D array of short strings, got shape {shape} of {dtype}")
    budget.check_classes(shape[0], "classes")
    for x_key, y_key in (("x_train", "y_train"), ("x_test", "y_test")):
        (x_shape, x_dtype), (y_shape, y_dtype) = headers[x_key], headers[y_key]
        if x_dtype != np.uint8:
            raise DataError(f"{x_key} must be uint8, got {x_dtype}")
        if y_dtype.kind not in "iu" or len(y_shape) != 1:
            raise DataError(f"{y_key} must be a 1-D integer array, got shape {y_shape} of {y_dtype}")
        if len(x_shape) not in (3, 4):
            raise DataError(f"{x_key} must be (N, H, W), (N, H, W, C) or (N, C, H, W)")
        budget.count_images(x_shape[0], x_key)
        height, width = x_shape[1:3] if len(x_shape) == 3 or x_shape[1] not in (1, 3) else x_shape[2:4]
        budget.check_pixels(height, width, f"an image of {x_key}")


def _load_npz(path: Path, budget: _Budget) -> tuple[ImageSet, ImageSet]:
    with np.load(path, allow_pickle=False) as arrays:
        required = {"x_train", "y_train", "x_test", "y_test", "classes"}
        missing = sorted(required - set(arrays.files))
        if missing:
            raise DataError(f"{path} lacks arrays: {', '.join(missing)}")
        _check_npz_headers(arrays, budget)
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
