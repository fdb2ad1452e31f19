"""Model files: safetensors weights whose metadata describes the network (never pickles)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from contracts.model_file import MetadataKey
from mpt.nets import build_net


class ArtifactError(ValueError):
    """A model file that is unreadable or does not fit its declared architecture."""


@dataclass(frozen=True)
class ModelSpec:
    """What is needed to rebuild a network and feed it: the file's metadata."""

    arch: str
    classes: tuple[str, ...]
    in_channels: int
    image_size: tuple[int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(C, H, W) the network is fed."""
        return (self.in_channels, self.image_size[0], self.image_size[1])

    def to_metadata(self) -> dict[str, str]:
        values = {
            MetadataKey.ARCH: self.arch,
            MetadataKey.CLASSES: list(self.classes),
            MetadataKey.IN_CHANNELS: self.in_channels,
            MetadataKey.IMAGE_SIZE: list(self.image_size),
            MetadataKey.MEAN: list(self.mean),
            MetadataKey.STD: list(self.std),
        }
        return {key.value: json.dumps(value) if not isinstance(value, str) else value for key, value in values.items()}

    @classmethod
    def from_metadata(cls, metadata: dict[str, str] | None) -> ModelSpec:
        metadata = metadata or {}
        try:
            # Looked up by the plain string, so that a KeyError names the key as the file does.
            values = {key: metadata[key.value] for key in MetadataKey}
            return cls(
                arch=values[MetadataKey.ARCH],
                classes=tuple(json.loads(values[MetadataKey.CLASSES])),
                in_channels=int(json.loads(values[MetadataKey.IN_CHANNELS])),
                image_size=tuple(json.loads(values[MetadataKey.IMAGE_SIZE])),
                mean=tuple(json.loads(values[MetadataKey.MEAN])),
                std=tuple(json.loads(values[MetadataKey.STD])),
            )
        except (KeyError, ValueError, TypeError) as error:
            raise ArtifactError(f"model file metadata is missing or malformed ({error})") from None


@dataclass
class LoadedModel:
    net: torch.nn.Module
    spec: ModelSpec


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def save_model(path: str | Path, net: torch.nn.Module, spec: ModelSpec) -> str:
    """Write weights + spec atomically (temp file, then rename); returns the file's sha256."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    save_file(state, str(tmp), metadata=spec.to_metadata())
    tmp.replace(path)
    return file_sha256(path)


def _named(keys: list[str], shown: int = 5) -> str:
    more = f" and {len(keys) - shown} more" if len(keys) > shown else ""
    return ", ".join(keys[:shown]) + more


def load_state_strictly(net: torch.nn.Module, state: dict[str, torch.Tensor], *, source: str, target: str) -> None:
    """Load `state` into `net`, refusing mis-shaped, missing, unexpected and non-finite tensors by name."""
    expected = net.state_dict()
    wrong = sorted(k for k in set(expected) & set(state) if expected[k].shape != state[k].shape)
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    problems = []
    if wrong:
        shapes = [f"{k} {tuple(state[k].shape)} != {tuple(expected[k].shape)}" for k in wrong]
        problems.append(f"{len(wrong)} tensor(s) of the wrong shape: {_named(shapes)}")
    if missing:
        problems.append(f"missing {_named(missing)}")
    if unexpected:
        problems.append(f"unexpected {_named(unexpected)}")
    if problems:
        raise ArtifactError(f"{source} does not fit {target}: {'; '.join(problems)}")
    if not all(torch.isfinite(t).all() for t in state.values() if t.is_floating_point()):
        raise ArtifactError(f"{source} holds non-finite weights")
    net.load_state_dict(state)


def load_model(path: str | Path, *, sha256: str | None = None) -> LoadedModel:
    """Rebuild a network from its file, checking the digest and every tensor's shape."""
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"no model file at {path}")
    if sha256 is not None and file_sha256(path) != sha256:
        raise ArtifactError(f"{path.name}: sha256 does not match the registered digest")
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as handle:
            spec = ModelSpec.from_metadata(handle.metadata())
        state = load_file(str(path))
    except (SafetensorError, OSError) as error:
        raise ArtifactError(f"{path.name} is not a readable safetensors file ({error})") from None
    try:
        net = build_net(spec.arch, num_classes=len(spec.classes), in_channels=spec.in_channels)
    except ValueError as error:
        raise ArtifactError(str(error)) from None
    load_state_strictly(net, state, source=path.name, target=f"{spec.arch} with {len(spec.classes)} classes")
    net.eval()
    return LoadedModel(net, spec)
