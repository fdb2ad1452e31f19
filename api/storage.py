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
from db.errors import InvalidInput
from db.settings import Settings

CHUNK_BYTES = 1 << 20
METADATA_PREFIX = "flipguard."
REQUIRED_METADATA = ("arch", "classes", "in_channels", "image_size", "mean", "std")


def resolve_data_path(uri: str, *, settings: Settings, loc: tuple) -> Path:
    """The real path of a user-given file or folder, which must lie inside a data root.

    realpath resolves `..` and symlinks first, so neither can lead outside the roots.
    """
    path = uri.removeprefix("file://")
    if not path or "\x00" in path:
        raise InvalidInput("empty or invalid path", loc=loc)
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


def read_model_metadata(path: Path, *, loc: tuple) -> ModelFileMetadata:
    """Validate a safetensors model file's header and flipguard metadata (without torch)."""
    try:
        with safe_open(str(path), framework="numpy") as handle:
            metadata = handle.metadata() or {}
            tensor_names = list(handle.keys())
    except (SafetensorError, OSError, ValueError) as error:
        raise InvalidInput(f"not a readable safetensors file: {error}", loc=loc) from None
    if not tensor_names:
        raise InvalidInput("the safetensors file holds no tensors", loc=loc)
    missing = [METADATA_PREFIX + key for key in REQUIRED_METADATA if METADATA_PREFIX + key not in metadata]
    if missing:
        raise InvalidInput(f"safetensors metadata lacks {', '.join(missing)}", loc=loc)
    try:
        classes = json.loads(metadata[METADATA_PREFIX + "classes"])
        in_channels = int(json.loads(metadata[METADATA_PREFIX + "in_channels"]))
        image_size = [int(side) for side in json.loads(metadata[METADATA_PREFIX + "image_size"])]
        mean, std = (
            [float(value) for value in json.loads(metadata[METADATA_PREFIX + key])]
            for key in ("mean", "std")
        )
    except (ValueError, TypeError) as error:
        raise InvalidInput(f"malformed flipguard metadata: {error}", loc=loc) from None
    if not isinstance(classes, list) or not classes or not all(isinstance(c, str) and c for c in classes):
        raise InvalidInput("flipguard.classes must be a non-empty list of class names", loc=loc)
    duplicates = sorted({name for name in classes if classes.count(name) > 1})
    if duplicates:
        raise InvalidInput(f"flipguard.classes lists these classes twice: {duplicates}", loc=loc)
    return ModelFileMetadata(
        architecture=metadata[METADATA_PREFIX + "arch"],
        classes=classes,
        in_channels=in_channels,
        image_size=image_size,
        mean=mean,
        std=std,
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
