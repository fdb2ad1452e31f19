"""Files the API touches: user-given paths (confined to the data roots) and the artifact store."""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from safetensors import SafetensorError, safe_open

from api.errors import ApiError
from contracts.model_file import HEAD_WEIGHT_KEYS, MetadataKey
from db.errors import InvalidInput
from db.settings import Settings

CHUNK_BYTES = 1 << 20
# A safetensors file starts with the header's length (u64, little-endian) and then its JSON.
MAX_HEADER_BYTES = 100 * 1024 * 1024


def resolve_data_path(uri: str, *, settings: Settings, loc: tuple) -> Path:
    """The real path of a user-given file or folder, which must lie inside a data root.

    realpath resolves `..` and symlinks first, so neither can lead outside the roots.
    """
    path = uri.removeprefix("file://")
    if not path or "\x00" in path:
        raise InvalidInput("empty or invalid path", loc=loc)
    if not os.path.isabs(path):
        raise InvalidInput(f"{uri} is not an absolute path on the server", loc=loc)
    real = Path(os.path.realpath(path))
    roots = [Path(os.path.realpath(root)) for root in settings.data_roots]
    if not any(real == root or root in real.parents for root in roots):
        allowed = ", ".join(str(root) for root in settings.data_roots)
        raise InvalidInput(f"{uri} is not inside an allowed data root ({allowed})", loc=loc)
    if not real.exists():
        raise InvalidInput(f"{uri} does not exist", loc=loc)
    return real


def file_sha256(path: Path) -> str:
    """The hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class StoredFile:
    uri: str  # relative to the artifact root
    path: Path
    sha256: str
    size: int


def store_model_file(source: BinaryIO, *, settings: Settings, loc: tuple) -> StoredFile:
    """Copy a model file into the artifact store, hashing it and enforcing the size limit."""
    uri = f"models/{uuid.uuid4().hex}.safetensors"
    target = settings.artifact_path(uri)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial")
    digest = hashlib.sha256()
    size = 0
    try:
        with open(partial, "wb") as out:
            for chunk in iter(lambda: source.read(CHUNK_BYTES), b""):
                size += len(chunk)
                if size > settings.max_upload_bytes:
                    raise ApiError(
                        413,
                        f"model file larger than {settings.max_upload_bytes} bytes",
                        loc=loc,
                        error_type="too_large",
                    )
                digest.update(chunk)
                out.write(chunk)
        partial.rename(target)
    finally:
        partial.unlink(missing_ok=True)
    return StoredFile(uri=uri, path=target, sha256=digest.hexdigest(), size=size)


@dataclass(frozen=True)
class ModelFileMetadata:
    architecture: str
    classes: list[str]
    in_channels: int
    image_size: list[int]
    mean: list[float]
    std: list[float]


def check_safetensors_framing(path: Path, *, loc: tuple) -> None:
    """Refuse anything that is not framed like a safetensors file, naming what it looks like.

    Only the first bytes are read: nothing is ever unpickled or unzipped.
    """
    with open(path, "rb") as handle:
        start = handle.read(9)
    header_bytes = int.from_bytes(start[:8], "little") if len(start) == 9 else 0
    if len(start) == 9 and start[8:9] == b"{" and header_bytes <= min(MAX_HEADER_BYTES, path.stat().st_size - 8):
        return
    if start.startswith(b"PK\x03\x04"):
        kind = "a zip archive (such as a torch.save checkpoint)"
    elif start[:1] == b"\x80" and start[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        kind = "a Python pickle"
    else:
        kind = "not a safetensors file"
    raise InvalidInput(f"{kind}: only safetensors weights are accepted (pickles are never loaded)", loc=loc)


def read_model_metadata(path: Path, *, loc: tuple) -> ModelFileMetadata:
    """Validate a safetensors model file's header, flipguard metadata and classifier shape
    (header only: no tensor data is read, no torch)."""
    check_safetensors_framing(path, loc=loc)
    try:
        with safe_open(str(path), framework="numpy") as handle:
            metadata = handle.metadata() or {}
            # safe_open has keys() but cannot be iterated.
            shapes = {name: handle.get_slice(name).get_shape() for name in handle.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError) as error:
        raise InvalidInput(f"corrupt safetensors file: {error}", loc=loc) from None
    if not shapes:
        raise InvalidInput("the safetensors file holds no tensors", loc=loc)
    missing = [key for key in MetadataKey if key not in metadata]
    if missing:
        raise InvalidInput(f"safetensors metadata lacks {', '.join(missing)}", loc=loc)
    try:
        classes = json.loads(metadata[MetadataKey.CLASSES])
        in_channels = int(json.loads(metadata[MetadataKey.IN_CHANNELS]))
        image_size = [int(side) for side in json.loads(metadata[MetadataKey.IMAGE_SIZE])]
        mean, std = (
            [float(value) for value in json.loads(metadata[key])] for key in (MetadataKey.MEAN, MetadataKey.STD)
        )
    except (ValueError, TypeError) as error:
        raise InvalidInput(f"malformed flipguard metadata: {error}", loc=loc) from None
    if not isinstance(classes, list) or not classes or not all(isinstance(c, str) and c for c in classes):
        raise InvalidInput(f"{MetadataKey.CLASSES} must be a non-empty list of class names", loc=loc)
    duplicates = sorted({name for name in classes if classes.count(name) > 1})
    if duplicates:
        raise InvalidInput(f"{MetadataKey.CLASSES} lists these classes twice: {duplicates}", loc=loc)
    architecture = metadata[MetadataKey.ARCH]
    check_head_shape(architecture, classes=classes, shapes=shapes, loc=loc)
    return ModelFileMetadata(
        architecture=architecture,
        classes=classes,
        in_channels=in_channels,
        image_size=image_size,
        mean=mean,
        std=std,
    )


def check_head_shape(architecture: str, *, classes: list[str], shapes: dict[str, list[int]], loc: tuple) -> None:
    """The architecture must be one the engine builds, and its classifier must have one output
    per class of the metadata."""
    if architecture not in HEAD_WEIGHT_KEYS:
        raise InvalidInput(
            f"unknown {MetadataKey.ARCH} {architecture!r}; known: {', '.join(HEAD_WEIGHT_KEYS)}", loc=loc
        )
    key = HEAD_WEIGHT_KEYS[architecture]
    shape = shapes.get(key)
    if shape is None or len(shape) != 2:
        raise InvalidInput(f"{architecture} weights need a 2-D {key} tensor (the classifier); found {shape}", loc=loc)
    if shape[0] != len(classes):
        raise InvalidInput(
            f"{key} has {shape[0]} outputs but {MetadataKey.CLASSES} names {len(classes)} classes", loc=loc
        )


def copy_data_file(path: Path, *, settings: Settings, loc: tuple) -> StoredFile:
    """Copy a model file given by path into the artifact store (same checks as an upload)."""
    if not path.is_file():
        raise InvalidInput(f"{path} is not a file", loc=loc)
    if path.stat().st_size > settings.max_upload_bytes:
        raise ApiError(
            413, f"model file larger than {settings.max_upload_bytes} bytes", loc=loc, error_type="too_large"
        )
    with open(path, "rb") as source:
        return store_model_file(source, settings=settings, loc=loc)
