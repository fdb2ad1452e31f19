"""Bring your own model: turn a deployed network's weights into a flipguard model file.

Accepted weights files:
  - a state_dict written by `torch.save(model.state_dict(), "model.pth")` (.pt/.pth), read
    with `torch.load(weights_only=True)`: only tensors and plain containers are unpickled;
  - a safetensors file;
  - a training checkpoint that wraps the state_dict under `state_dict`, `model` or
    `model_state_dict` (other entries, such as the optimiser's state, are ignored);
  - keys prefixed by `module.` (DataParallel, DistributedDataParallel) or `_orig_mod.`
    (torch.compile).
Refused: a whole pickled model (`torch.save(model)`) or a checkpoint holding other Python
objects (e.g. an argparse.Namespace): save `model.state_dict()` on its own and import that.

Every tensor must load into the architecture (missing, unexpected and mis-shaped tensors are
named) and the classifier head must have one row per class, in the order of the class list.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from contracts.model_file import HEAD_WEIGHT_KEYS
from mpt.artifacts import ArtifactError, ModelSpec, load_state_strictly, save_model
from mpt.nets import build_net

CHECKPOINT_KEYS = ("state_dict", "model", "model_state_dict")
WRAPPER_PREFIXES = ("module.", "_orig_mod.")


def parse_class_names(text: str) -> list[str]:
    """A file with one class name per line, or a comma-separated list of names."""
    path = Path(text)
    names = [name.strip() for name in (path.read_text().splitlines() if path.is_file() else text.split(","))]
    names = [name for name in names if name]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if not names:
        raise ValueError(f"no class names in {text!r}")
    if duplicates:
        raise ValueError(f"class names must be unique; repeated: {', '.join(duplicates)}")
    return names


def parse_floats(text: str, *, what: str) -> tuple[float, ...]:
    """'0.485,0.456,0.406' -> (0.485, 0.456, 0.406)."""
    try:
        return tuple(float(value) for value in text.split(","))
    except ValueError:
        raise ValueError(f"{what} must be comma-separated numbers, got {text!r}") from None


def parse_image_size(text: str) -> tuple[int, int]:
    """'224' (square), '224x224' or '32,48' -> (height, width)."""
    parts = re.split(r"[x,]", text.strip().lower())
    if len(parts) in (1, 2) and all(part.isdigit() and int(part) > 0 for part in parts):
        return (int(parts[0]), int(parts[-1]))
    raise ValueError(f"image size must be H, HxW or H,W in pixels, got {text!r}")


def _is_safetensors(path: Path) -> bool:
    # A safetensors file starts with its header's length (u64) and then the JSON header.
    with open(path, "rb") as handle:
        return handle.read(9)[8:9] == b"{"


def _torch_load(path: Path) -> object:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        needed = re.search(r"Unsupported global: GLOBAL (\S+)", str(error))
        what = f" (it needs {needed.group(1)}, which a weights-only load never imports)" if needed else ""
        raise ArtifactError(
            f"{path.name}: this file holds a pickled object, not a state_dict{what}; "
            "save model.state_dict() with torch.save and import that file"
        ) from None
    except Exception as error:  # torch.load fails in many ways on a file it cannot parse
        raise ArtifactError(
            f"{path.name} is neither a safetensors file nor a torch.save file ({type(error).__name__}: {error})"
        ) from None


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a state_dict or safetensors file, unwrapped from a checkpoint and unprefixed."""
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"no weights file at {path}")
    if _is_safetensors(path):
        try:
            loaded: object = load_file(str(path))
        except SafetensorError as error:
            raise ArtifactError(f"{path.name} is not a readable safetensors file ({error})") from None
    else:
        loaded = _torch_load(path)
    if isinstance(loaded, dict):
        wrapped = next((key for key in CHECKPOINT_KEYS if isinstance(loaded.get(key), dict)), None)
        loaded = loaded[wrapped] if wrapped else loaded
    if not isinstance(loaded, dict) or not loaded:
        raise ArtifactError(f"{path.name} holds a {type(loaded).__name__}, not a state_dict (tensor names to tensors)")
    not_tensors = [str(key) for key, value in loaded.items() if not isinstance(value, torch.Tensor)]
    if not_tensors:
        raise ArtifactError(
            f"{path.name} is not a state_dict: {', '.join(not_tensors[:5])} are not tensors "
            f"(a checkpoint should wrap its state_dict under one of {', '.join(CHECKPOINT_KEYS)})"
        )
    state = dict(loaded)
    stripped = True
    while stripped:  # wrappers nest: DDP around torch.compile gives `module._orig_mod.`
        prefix = next((p for p in WRAPPER_PREFIXES if all(key.startswith(p) for key in state)), None)
        stripped = prefix is not None
        if prefix:
            state = {key[len(prefix) :]: value for key, value in state.items()}
    return state


def _first_conv_weight(net: nn.Module) -> str:
    return next(f"{name}.weight" for name, module in net.named_modules() if isinstance(module, nn.Conv2d))


def import_model(
    weights: str | Path,
    *,
    arch: str,
    classes: list[str],
    image_size: tuple[int, int],
    mean: tuple[float, ...],
    std: tuple[float, ...],
    out: str | Path,
    in_channels: int | None = None,
) -> tuple[ModelSpec, str]:
    """Check `weights` against `arch` and write them as a flipguard model file; returns its spec and sha256."""
    source = Path(weights).name
    state = read_state_dict(weights)
    net = build_net(arch, num_classes=len(classes), in_channels=in_channels or 3, seed=0)
    if in_channels is None:
        stem = state.get(_first_conv_weight(net))
        in_channels = stem.shape[1] if stem is not None and stem.ndim == 4 else 3
        if in_channels != 3:
            net = build_net(arch, num_classes=len(classes), in_channels=in_channels, seed=0)
    head_key = HEAD_WEIGHT_KEYS[arch]
    head = state.get(head_key)
    if head is not None and head.shape[0] != len(classes):
        raise ArtifactError(
            f"{source}: the head {head_key} has {head.shape[0]} rows but {len(classes)} classes were "
            "given; the class list needs one name per output of the model, in the order of its outputs"
        )
    for name, values in (("mean", mean), ("std", std)):
        if len(values) != in_channels:
            raise ValueError(f"{name} has {len(values)} value(s) but the model takes {in_channels} input channel(s)")
    if any(value <= 0 for value in std):
        raise ValueError(f"std must be positive, got {list(std)}")
    load_state_strictly(net, state, source=source, target=f"{arch} with {len(classes)} classes")
    net.eval()
    try:
        with torch.no_grad():
            net(torch.zeros(1, in_channels, *image_size))
    except RuntimeError as error:
        shape = f"{in_channels}x{image_size[0]}x{image_size[1]}"
        raise ArtifactError(f"{arch} does not run on {shape} inputs ({error})") from None
    spec = ModelSpec(
        arch=arch,
        classes=tuple(classes),
        in_channels=in_channels,
        image_size=image_size,
        mean=tuple(mean),
        std=tuple(std),
    )
    return spec, save_model(out, net, spec)
