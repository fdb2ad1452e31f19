"""Hostile data sets of a few KB on disk that declare or decode to gigabytes, written without
ever holding those gigabytes (shared by the engine tests and the worker integration tests)."""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def npz_declaring(path: Path, shape: tuple[int, ...]) -> Path:
    """An npz data set whose x_train header declares `shape` (uint8) but holds a few bytes."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "|u1", "fortran_order": False, "shape": shape})
    small = np.zeros((4, 8, 8), np.uint8)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("x_train.npy", header.getvalue() + b"\0" * 64)
        archive.writestr("y_train.npy", _npy_bytes(np.zeros(4, np.int64)))
        archive.writestr("x_test.npy", _npy_bytes(small))
        archive.writestr("y_test.npy", _npy_bytes(np.zeros(4, np.int64)))
        archive.writestr("classes.npy", _npy_bytes(np.array(["a", "b"])))
    return path


def idx_declaring(folder: Path, images: int, side: int) -> Path:
    """A Fashion-MNIST folder whose training images file declares `images` of side x side."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "train-images-idx3-ubyte").write_bytes(struct.pack(">HBB3I", 0, 8, 3, images, side, side) + b"\0" * 64)
    (folder / "train-labels-idx1-ubyte").write_bytes(struct.pack(">HBBI", 0, 8, 1, 4) + b"\0" * 4)
    (folder / "t10k-images-idx3-ubyte").write_bytes(struct.pack(">HBB3I", 0, 8, 3, 1, 28, 28) + b"\0" * 784)
    (folder / "t10k-labels-idx1-ubyte").write_bytes(struct.pack(">HBBI", 0, 8, 1, 1) + b"\0")
    return folder


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_of_zeros(path: Path, width: int, height: int) -> Path:
    """A valid greyscale PNG of width x height black pixels, compressed row by row (a
    20000 x 20000 one is about 400 KB on disk and 400 MB decoded)."""
    compressor = zlib.compressobj(9)
    row = b"\0" * (width + 1)  # filter byte + pixels
    parts = [compressor.compress(row) for _ in range(height)]
    parts.append(compressor.flush())
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", b"".join(parts))
        + _png_chunk(b"IEND", b"")
    )
    return path


def imagefolder_with(root: Path, bomb: Path | None = None) -> Path:
    """An ImageFolder data set of tiny PNGs; `bomb` (a file) joins the training images of class a."""
    for split in ("train", "test"):
        for name in ("a", "b"):
            (root / split / name).mkdir(parents=True, exist_ok=True)
            png_of_zeros(root / split / name / "ok.png", 8, 8)
    if bomb is not None:
        bomb.replace(root / "train" / "a" / bomb.name)
    return root
