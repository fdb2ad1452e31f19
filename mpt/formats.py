"""Readers of the four on-disk formats (Fashion-MNIST idx, ImageFolder, CIFAR-100 pickles, npz)
into `mpt.data` sets.

Every reader works within `DataLimits` (bytes, images, pixels per image, classes): sizes are
read from headers (npz and idx headers, image dimensions, file sizes) and checked before
anything that large is allocated or decoded, so a hostile data set is a DataError naming the
limit, never an allocation that kills the process.
"""

from __future__ import annotations

import gzip
import io
import math
import os
import pickle
import struct
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
import torch.utils.data
from PIL import Image

from contracts.data_formats import DatasetFormat
from contracts.limits import MAX_CLASS_NAME_CHARS, duplicates
from mpt.data import (
    DataBundle,
    DataError,
    ImageFiles,
    ImageSet,
    content_digest,
    decode_all,
    files_digest,
)
from mpt.images import ImageFileError, ImageHeader, read_header
from mpt.limits import DataLimits, ReadBudget

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


def open_dataset(uri: str | Path, data_format: str | None = None, *, limits: DataLimits | None = None) -> DataBundle:
    """Open a data set within `limits` (default: DataLimits()): arrays are read into memory;
    an image folder's files are listed and their headers read (sizes, modes), their pixels
    left on disk until a batch needs them. Any unreadable input is a DataError."""
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
        train, test = LOADERS[DatasetFormat(data_format)](path, ReadBudget(limits))
    except DataError:
        raise
    except MemoryError:
        raise DataError(f"{path}: ran out of memory while loading it (lower the data set limits)") from None
    except UNREADABLE as error:
        raise DataError(f"{path} is not a readable {data_format} data set ({type(error).__name__}: {error})") from None
    if train.classes != test.classes:
        raise DataError("the training and evaluation splits name different classes")
    twice = duplicates(train.classes)
    if twice:
        raise DataError(f"duplicate class names in the data set: {', '.join(twice)}")
    if isinstance(train, ImageFiles) and isinstance(test, ImageFiles):
        return DataBundle(train, test, files_digest(path, train, test))
    assert isinstance(train, ImageSet) and isinstance(test, ImageSet)  # the array formats
    if train.shape != test.shape:
        raise DataError("the training and evaluation splits have different image shapes")
    return DataBundle(train, test, content_digest(train, test))


def load_dataset(uri: str | Path, data_format: str | None = None, *, limits: DataLimits | None = None) -> DataBundle:
    """Read a data set into memory as uint8 tensors at its images' own size (which all its
    images must share; `open_dataset` and a recipe's image_size take any sizes), within
    `limits`: an image folder's decoded pixels count against max_bytes."""
    limits = limits or DataLimits()
    bundle = open_dataset(uri, data_format, limits=limits)
    budget = ReadBudget(limits)
    parts = []
    for name, part in (("train", bundle.train), ("test", bundle.test)):
        if isinstance(part, ImageFiles):
            if part.shape is None:
                sizes = sorted({(h.height, h.width) for h in part.headers})
                raise DataError(
                    f"images under {Path(uri) / name} differ in size ({sizes[0]}..{sizes[-1]}, height x width): "
                    "set the recipe's image_size to fit them to one size"
                )
            budget.spend(len(part) * math.prod(part.shape), f"decoding {Path(uri) / name}")
            part = decode_all(part, part.shape)
        parts.append(part)
    if parts[0].shape != parts[1].shape:
        raise DataError("the training and evaluation splits have different image shapes")
    return DataBundle(parts[0], parts[1], bundle.digest)


def _read_idx(path: Path, budget: ReadBudget) -> np.ndarray:
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


def _load_fashion_mnist(root: Path, budget: ReadBudget) -> tuple[ImageSet, ImageSet]:
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


def _read_header(file: Path, budget: ReadBudget) -> ImageHeader:
    """One image file's header, its size within the limits; no pixel is decoded."""
    if not file.is_file():
        raise DataError(f"{file} is not a regular file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            header = read_header(file)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise budget.limits.exceeded("max_image_pixels", f"{file} ({error})") from None
    except ImageFileError as error:
        raise DataError(str(error)) from None
    budget.check_pixels(header.height, header.width, str(file))
    return header


def _open_imagefolder(root: Path, budget: ReadBudget) -> tuple[ImageFiles, ImageFiles]:
    split_dirs = [root / "train", root / "test"]
    for split_dir in split_dirs:
        if not split_dir.is_dir():
            raise DataError(f"an imagefolder data set needs {split_dir}/<class>/<image> files")
    classes = sorted(p.name for p in split_dirs[0].iterdir() if p.is_dir())
    budget.check_classes(len(classes), str(split_dirs[0]))
    # Pillow refuses (DecompressionBombError) or warns past MAX_IMAGE_PIXELS when it opens a
    # file; the warning is an error here too (_read_header).
    Image.MAX_IMAGE_PIXELS = budget.limits.max_image_pixels
    listed = []
    for split_dir in split_dirs:
        files, headers, labels = [], [], []
        for index, name in enumerate(classes):
            found = [file for file in sorted((split_dir / name).glob("*")) if file.suffix.lower() in IMAGE_SUFFIXES]
            budget.count_images(len(found), f"{split_dir / name}")
            for file in found:
                headers.append(_read_header(file, budget))
                files.append(str(file))
                labels.append(index)
        if not files:
            raise DataError(f"no images under {split_dir}")
        listed.append((files, headers, torch.tensor(labels, dtype=torch.long)))
    # Grey files stay one channel, unless any file of either split has colour.
    channels = 1 if all(h.grey for _, headers, _ in listed for h in headers) else 3
    train, test = (ImageFiles(files, headers, labels, list(classes), channels) for files, headers, labels in listed)
    return train, test


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

    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in self.ALLOWED:
            raise DataError(f"refusing to load {module}.{name} from a CIFAR pickle")
        return super().find_class(module, name)


def _read_cifar_pickle(path: Path, budget: ReadBudget) -> dict:
    if not path.is_file():
        raise DataError(f"missing CIFAR-100 file {path}")
    # A pickle holds its arrays' bytes: its size bounds what it decodes to.
    budget.spend(path.stat().st_size, f"{path.name} ({path.stat().st_size} bytes on disk)")
    with open(path, "rb") as handle:
        raw = _ArrayUnpickler(io.BufferedReader(handle), encoding="bytes").load()
    return {(k.decode() if isinstance(k, bytes) else k): v for k, v in raw.items()}


def _load_cifar100(root: Path, budget: ReadBudget) -> tuple[ImageSet, ImageSet]:
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
    members = archive.zip
    if members is None:
        raise ValueError("the .npz archive is closed: its array headers can no longer be read")
    names = members.namelist()
    member = f"{key}.npy" if f"{key}.npy" in names else key
    with members.open(member) as handle:
        version = np.lib.format.read_magic(handle)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(handle)
        elif version == (2, 0):
            shape, _, dtype = np.lib.format.read_array_header_2_0(handle)
        else:
            raise DataError(f"{key}: unsupported .npy format version {version}")
    return tuple(shape), dtype


def _check_npz_headers(arrays: np.lib.npyio.NpzFile, budget: ReadBudget) -> None:
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


def _load_npz(path: Path, budget: ReadBudget) -> tuple[ImageSet, ImageSet]:
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
LOADERS: dict[
    DatasetFormat, Callable[[Path, ReadBudget], tuple[ImageSet, ImageSet] | tuple[ImageFiles, ImageFiles]]
] = {
    DatasetFormat.FASHION_MNIST: _load_fashion_mnist,
    DatasetFormat.IMAGEFOLDER: _open_imagefolder,
    DatasetFormat.CIFAR: _load_cifar100,
    DatasetFormat.NPZ: _load_npz,
}
