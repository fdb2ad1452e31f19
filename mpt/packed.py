"""Several students of one architecture as one network, for sweeps (mpt.train.train_students).

Student i's layers become slice i of each packed layer: the stem convolution reads the shared
input and writes N x its channels; every later convolution is grouped (groups x N) so that
student i's channels only ever see student i's; BatchNorm, ReLU and pooling work channel by
channel, so each student keeps its own statistics; the head is N linear maps applied as one
batched product. Every packed tensor is the students' tensors concatenated along dim 0 (the
scalar BatchNorm step counter is shared), so a packed state dict has the template's keys and
packs and unpacks by concatenation: checkpoints and exported models stay per student.

Each student's arithmetic is its own (same maths; only the float rounding of the grouped
kernels can differ), and one launch sequence serves all N: on a GPU that is launch-bound at
batch 128 this is the sweep's gain (docs/BENCHMARKS.md, GPU section).
"""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

from mpt.nets import SmallCNN

# Modules whose forward either only calls its children in order (the containers of
# mpt.nets' architectures) or works channel by channel (the rest): both stay as they are.
_CONTAINERS = (nn.Sequential, ResNet, BasicBlock, Bottleneck, SmallCNN)
_CHANNELWISE = (nn.ReLU, nn.MaxPool2d, nn.AdaptiveAvgPool2d, nn.Flatten, nn.Identity)
# Layers replaced by their packed form (exact types: a subclass may compute something else).
_PACKED = (nn.Conv2d, nn.BatchNorm2d, nn.Linear)


class NotPackable(ValueError):
    """The networks cannot be packed (a layer packing does not know, or different shapes)."""


class PackedLinear(nn.Module):
    """N linear heads as one (N*out, in) weight: input (B, N*in), output (N, B, out).

    Each head is its own F.linear, the kernel nn.Linear runs, rather than one batched product:
    N - 1 more small launches per pass, and each student's head computes exactly what its own
    network's does (with kernels that loop over a grouped convolution's groups, a packed run is
    bit for bit the side-by-side run: tests/engine/test_packed.py).
    """

    def __init__(
        self,
        students: int,
        in_features: int,
        out_features: int,
        *,
        bias: bool,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.students, self.in_features, self.out_features = students, in_features, out_features
        # weight before bias, as nn.Linear registers them: parameters keep the template's order.
        self.weight = nn.Parameter(torch.empty(students * out_features, in_features, device=device, dtype=dtype))
        self.bias = nn.Parameter(torch.empty(students * out_features, device=device, dtype=dtype)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = x.reshape(x.shape[0], self.students, self.in_features)
        weights = self.weight.view(self.students, self.out_features, self.in_features)
        biases = self.bias.view(self.students, self.out_features) if self.bias is not None else [None] * self.students
        return torch.stack([F.linear(features[:, i], weights[i], biases[i]) for i in range(self.students)])


def _packed_conv(layer: nn.Conv2d, students: int, *, stem: bool) -> nn.Conv2d:
    geometry: dict[str, Any] = {
        "kernel_size": layer.kernel_size,
        "stride": layer.stride,
        "padding": layer.padding,
        "dilation": layer.dilation,
        "padding_mode": layer.padding_mode,
    }
    return nn.Conv2d(
        layer.in_channels if stem else students * layer.in_channels,
        students * layer.out_channels,
        # The stem's students all read the same input channels; later layers read their own.
        groups=layer.groups if stem else students * layer.groups,
        bias=layer.bias is not None,
        device=layer.weight.device,
        dtype=layer.weight.dtype,
        **geometry,
    )


def _packed_layer(layer: nn.Module, students: int, *, stem: bool) -> nn.Module:
    if isinstance(layer, nn.Conv2d):
        return _packed_conv(layer, students, stem=stem)
    if isinstance(layer, nn.BatchNorm2d):
        return nn.BatchNorm2d(
            students * layer.num_features,
            eps=layer.eps,
            momentum=layer.momentum,
            affine=layer.affine,
            track_running_stats=layer.track_running_stats,
            device=layer.running_mean.device if layer.running_mean is not None else None,
            dtype=layer.running_mean.dtype if layer.running_mean is not None else None,
        )
    assert isinstance(layer, nn.Linear)
    return PackedLinear(
        students,
        layer.in_features,
        layer.out_features,
        bias=layer.bias is not None,
        device=layer.weight.device,
        dtype=layer.weight.dtype,
    )


def _packed_structure(template: nn.Module, students: int) -> nn.Module:
    """A copy of `template` with every conv, BatchNorm and the one linear head packed."""
    packed = copy.deepcopy(template)
    linears = [m for m in packed.modules() if isinstance(m, nn.Linear)]
    if len(linears) != 1:
        raise NotPackable(f"packing needs exactly one linear layer (the head), found {len(linears)}")
    stem = next((m for m in packed.modules() if isinstance(m, nn.Conv2d)), None)
    for parent in [m for m in packed.modules() if next(m.children(), None) is not None]:
        if not isinstance(parent, _CONTAINERS):
            raise NotPackable(f"packing does not know the module {type(parent).__name__}")
        for name, child in parent.named_children():
            if type(child) in _PACKED:
                setattr(parent, name, _packed_layer(child, students, stem=child is stem))
            elif not isinstance(child, (*_CONTAINERS, *_CHANNELWISE)):
                raise NotPackable(f"packing does not know the layer {type(child).__name__}")
    return packed


def pack_state_dicts(state_dicts: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The packed network's state dict: each tensor concatenated along dim 0, scalars shared."""
    packed = {}
    for key, first in state_dicts[0].items():
        values = [state[key] for state in state_dicts]
        if first.dim() == 0:
            if any(not torch.equal(v, first) for v in values):
                raise NotPackable(f"{key} differs between the students ({[int(v) for v in values]})")
            packed[key] = first.clone()
        else:
            packed[key] = torch.cat(values)
    return packed


def unpack_state_dict(state: dict[str, torch.Tensor], students: int) -> list[dict[str, torch.Tensor]]:
    """Each student's state dict from a packed one: views into the packed tensors, and a copy
    each of a shared scalar."""
    return [
        {key: value.clone() if value.dim() == 0 else value.chunk(students)[i] for key, value in state.items()}
        for i in range(students)
    ]


def pack_tensors(per_student: list[list[torch.Tensor]]) -> list[torch.Tensor]:
    """Per-student lists of matching tensors (e.g. momentum buffers) packed like parameters."""
    return [torch.cat(tensors) for tensors in zip(*per_student, strict=True)]


def unpack_tensors(packed: list[torch.Tensor], students: int) -> list[list[torch.Tensor]]:
    """The inverse of pack_tensors: for each student, its slice of every packed tensor."""
    return [[tensor.chunk(students)[i] for tensor in packed] for i in range(students)]


def pack(nets: list[nn.Module]) -> nn.Module:
    """One network computing every net of `nets` (same architecture) at once; logits (N, B, K).

    Raises NotPackable when the architecture holds a layer packing does not know or the nets'
    shapes differ. The nets themselves are not changed; `unpack_into` writes back to them.
    """
    shapes = [{k: v.shape for k, v in net.state_dict().items()} for net in nets]
    if any(s != shapes[0] for s in shapes):
        raise NotPackable("the students' networks differ in their layers or shapes")
    packed = _packed_structure(nets[0], len(nets))
    packed.load_state_dict(pack_state_dicts([net.state_dict() for net in nets]))
    return packed.train(nets[0].training)


def unpack_into(packed: nn.Module, nets: list[nn.Module]) -> None:
    """Copy each student's slice of `packed` into its own network (in place)."""
    for net, state in zip(nets, unpack_state_dict(packed.state_dict(), len(nets)), strict=True):
        net.load_state_dict(state)
