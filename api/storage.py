"""Files the API touches: user-given paths (confined to the data roots) and the artifact store."""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from fastapi.responses import FileResponse

from api.errors import ApiError
from api.model_files import check_state_dict, read_safetensors_header
from api.partials import locked_partial
from contracts.limits import MAX_CLASS_NAME_CHARS, MAX_CLASSES, duplicates
from contracts.model_file import MetadataKey
from db.errors import InvalidInput
from db.settings import Settings

if TYPE_CHECKING:  # numpy is imported where it is used (see png_bytes)
    import numpy.typing as npt

CHUNK_BYTES = 1 << 20
# A safetensors file starts with the header's length (u64, little-endian) and then its JSON.
MAX_HEADER_BYTES = 16 * 1024 * 1024


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
        raise InvalidInput(
            f"{uri} is not inside an allowed data root ({allowed}); to allow its folder, add it to the "
            "server's FLIPGUARD_DATA_ROOTS setting (a JSON list of folders) and restart the API and workers",
            loc=loc,
        )
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


def checked_weights_response(path: Path, *, sha256: str, filename: str, what: str, loc: tuple) -> FileResponse:
    """A stored weights file as a download, after checking it is there and matches its sha256."""
    if not path.is_file():
        raise ApiError(404, f"{what} are missing from the artifact store", loc=loc, error_type="artifact_missing")
    if file_sha256(path) != sha256:
        raise ApiError(500, f"{what} do not match their sha256", loc=loc, error_type="artifact_corrupt")
    return FileResponse(
        path, media_type="application/octet-stream", filename=filename, headers={"X-Checksum-Sha256": sha256}
    )


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
        with locked_partial(partial) as out:
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
    """Validate a safetensors model file's header, flipguard metadata and tensors: the file
    must hold exactly its architecture's state dict (header only: no tensor data, no torch)."""
    check_safetensors_framing(path, loc=loc)
    header = read_safetensors_header(path, loc=loc)
    metadata = header.metadata
    if not header.tensors:
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
    except (ValueError, TypeError, RecursionError) as error:
        raise InvalidInput(f"malformed flipguard metadata: {error}", loc=loc) from None
    if not isinstance(classes, list) or not classes or not all(isinstance(c, str) and c for c in classes):
        raise InvalidInput(f"{MetadataKey.CLASSES} must be a non-empty list of class names", loc=loc)
    if len(classes) > MAX_CLASSES or any(len(name) > MAX_CLASS_NAME_CHARS for name in classes):
        raise InvalidInput(
            f"{MetadataKey.CLASSES} may name at most {MAX_CLASSES} classes "
            f"of at most {MAX_CLASS_NAME_CHARS} characters",
            loc=loc,
        )
    twice = duplicates(classes)
    if twice:
        raise InvalidInput(f"{MetadataKey.CLASSES} lists these classes twice: {twice}", loc=loc)
    check_normalisation(in_channels=in_channels, image_size=image_size, mean=mean, std=std, loc=loc)
    architecture = metadata[MetadataKey.ARCH]
    check_state_dict(architecture, num_classes=len(classes), in_channels=in_channels, tensors=header.tensors, loc=loc)
    return ModelFileMetadata(
        architecture=architecture,
        classes=classes,
        in_channels=in_channels,
        image_size=image_size,
        mean=mean,
        std=std,
    )


def check_normalisation(
    *, in_channels: int, image_size: list[int], mean: list[float], std: list[float], loc: tuple
) -> None:
    """Two positive image sides, and a finite mean and a positive finite std per input channel."""
    if len(image_size) != 2 or not all(0 < side <= 65536 for side in image_size):
        raise InvalidInput(f"{MetadataKey.IMAGE_SIZE} must be [height, width], got {image_size}", loc=loc)
    if len(mean) != in_channels or len(std) != in_channels:
        raise InvalidInput(
            f"{MetadataKey.MEAN} and {MetadataKey.STD} need one value per channel ({in_channels})", loc=loc
        )
    if not all(math.isfinite(m) for m in mean) or not all(math.isfinite(s) and s > 0 for s in std):
        raise InvalidInput(f"{MetadataKey.MEAN} must be finite and {MetadataKey.STD} finite and positive", loc=loc)


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


def png_bytes(pixels: npt.ArrayLike, *, min_side: int) -> bytes:
    """A (C, H, W) uint8 image as PNG bytes, upscaled (nearest neighbour) until its short side
    reaches `min_side` pixels so that small images stay visible."""
    import numpy as np  # imported here: the client CLI imports this module for its choices
    from PIL import Image

    pixels = np.asarray(pixels, dtype=np.uint8)
    image = Image.fromarray(pixels[0] if pixels.shape[0] == 1 else pixels.transpose(1, 2, 0))
    scale = max(1, -(-min_side // min(image.size)))
    image = image.resize((image.width * scale, image.height * scale), Image.Resampling.NEAREST)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
