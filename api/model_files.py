"""Model files read without torch: the safetensors header (8 bytes of length, then JSON) and a
check of its tensors against the architecture's full state dict (contracts.architectures).

Only the header is read; the tensors' bytes are never loaded, but their offsets must tile the
rest of the file exactly as their shapes and dtypes say.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from contracts.architectures import ARCHITECTURES, IN_CHANNELS, state_dict_mismatches
from db.errors import InvalidInput

# Bytes per element of every safetensors dtype.
DTYPE_BYTES = {
    "BOOL": 1,
    "U8": 1,
    "I8": 1,
    "F8_E5M2": 1,
    "F8_E4M3": 1,
    "I16": 2,
    "U16": 2,
    "F16": 2,
    "BF16": 2,
    "I32": 4,
    "U32": 4,
    "F32": 4,
    "I64": 8,
    "U64": 8,
    "F64": 8,
}
# The header of a ResNet-50 with 10,000 long class names is a few MB.
MAX_HEADER_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class SafetensorsHeader:
    metadata: dict[str, str]
    tensors: dict[str, tuple[tuple[int, ...], str]]  # name -> (shape, dtype)


def _no_duplicate_keys(pairs: list[tuple[str, object]]) -> dict:
    keys = [key for key, _ in pairs]
    if len(set(keys)) != len(keys):
        raise ValueError("a key appears twice in the header")
    return dict(pairs)


def read_safetensors_header(path: Path, *, loc: tuple) -> SafetensorsHeader:
    """Parse and validate a safetensors header: JSON object, string metadata, and tensors whose
    byte ranges match their shapes and dtypes and cover the data section without gaps."""

    def corrupt(reason: str) -> InvalidInput:
        return InvalidInput(f"corrupt safetensors file: {reason}", loc=loc)

    size = path.stat().st_size
    with open(path, "rb") as handle:
        length = int.from_bytes(handle.read(8), "little")
        if size < 8 or length > min(MAX_HEADER_BYTES, size - 8):
            raise corrupt(f"a header of {length} bytes does not fit the file (at most {MAX_HEADER_BYTES})")
        raw = handle.read(length)
    try:
        header = json.loads(raw, object_pairs_hook=_no_duplicate_keys)
    except (ValueError, RecursionError) as error:
        raise corrupt(f"the header is not valid JSON ({error})") from None
    if not isinstance(header, dict):
        raise corrupt("the header is not a JSON object")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise corrupt("__metadata__ must map names to strings")
    data_bytes = size - 8 - length
    tensors: dict[str, tuple[tuple[int, ...], str]] = {}
    ranges = []
    for name, info in header.items():
        if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
            raise corrupt(f"tensor {name!r} needs exactly dtype, shape and data_offsets")
        dtype, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
        if dtype not in DTYPE_BYTES:
            raise corrupt(f"tensor {name!r} has an unknown dtype {dtype!r}")
        if not isinstance(shape, list) or not all(type(side) is int and side >= 0 for side in shape):
            raise corrupt(f"tensor {name!r} has an invalid shape {shape!r}")
        if (
            not isinstance(offsets, list)
            or len(offsets) != 2
            or not all(type(offset) is int for offset in offsets)
            or not 0 <= offsets[0] <= offsets[1] <= data_bytes
        ):
            raise corrupt(f"tensor {name!r} has data offsets {offsets!r} outside the file")
        if offsets[1] - offsets[0] != math.prod(shape) * DTYPE_BYTES[dtype]:
            raise corrupt(f"tensor {name!r}: {offsets[1] - offsets[0]} bytes for shape {shape} of {dtype}")
        tensors[name] = (tuple(shape), dtype)
        ranges.append((offsets[0], offsets[1]))
    position = 0
    for start, end in sorted(ranges):
        if start != position:
            raise corrupt("the tensors' byte ranges overlap or leave gaps")
        position = end
    if position != data_bytes:
        raise corrupt(f"the tensors cover {position} of the {data_bytes} data bytes")
    return SafetensorsHeader(metadata=metadata, tensors=tensors)


def check_state_dict(architecture: str, *, num_classes: int, in_channels: int, tensors: dict, loc: tuple) -> None:
    """The file's tensors must be exactly the architecture's state dict: every name, shape and
    dtype of contracts.architectures for this many classes and input channels."""
    if architecture not in ARCHITECTURES:
        raise InvalidInput(f"unknown flipguard.arch {architecture!r}; known: {', '.join(ARCHITECTURES)}", loc=loc)
    if in_channels not in IN_CHANNELS:
        raise InvalidInput(f"flipguard.in_channels must be one of {IN_CHANNELS}, not {in_channels}", loc=loc)
    problems = state_dict_mismatches(architecture, num_classes=num_classes, in_channels=in_channels, found=tensors)
    if problems:
        raise InvalidInput(
            f"the tensors do not fit {architecture} with {num_classes} classes and {in_channels} input "
            f"channel(s): {'; '.join(problems)}",
            loc=loc,
        )
