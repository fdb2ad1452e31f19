"""Networks by name: torchvision ResNets adapted to the input's channels, and a small CNN."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torchvision import models as tv_models


class SmallCNN(nn.Module):
    """Three conv blocks and a linear head: trains on Fashion-MNIST in seconds on a CPU."""

    def __init__(self, num_classes: int, in_channels: int = 1, width: int = 32):
        super().__init__()

        def block(c_in: int, c_out: int) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)
            )

        self.features = nn.Sequential(
            block(in_channels, width),
            nn.MaxPool2d(2),
            block(width, 2 * width),
            nn.MaxPool2d(2),
            block(2 * width, 4 * width),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.fc = nn.Linear(4 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))


def _resnet(builder: Callable[..., nn.Module]) -> Callable[[int, int], nn.Module]:
    def build(num_classes: int, in_channels: int) -> nn.Module:
        net = builder(weights=None, num_classes=num_classes)
        if in_channels != 3:
            # Same ImageNet stem (docs/METHOD.md, "The paper's recipe"), only the input channels differ.
            net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        return net

    return build


ARCHITECTURES = {
    "small_cnn": lambda num_classes, in_channels: SmallCNN(num_classes, in_channels),
    "resnet18": _resnet(tv_models.resnet18),
    "resnet34": _resnet(tv_models.resnet34),
    "resnet50": _resnet(tv_models.resnet50),
}


def build_net(arch: str, *, num_classes: int, in_channels: int, seed: int | None = None) -> nn.Module:
    """A freshly initialised network, its initial weights fixed by `seed` when given."""
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHITECTURES)}")
    if num_classes < 1 or in_channels not in (1, 3):
        raise ValueError(f"need at least one class and 1 or 3 input channels, got {num_classes} and {in_channels}")
    if seed is None:
        return ARCHITECTURES[arch](num_classes, in_channels)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return ARCHITECTURES[arch](num_classes, in_channels)


def warm_start(net: nn.Module, base: nn.Module) -> None:
    """Copy `base`'s weights into `net` of the same architecture; where `net` has more outputs
    (the head of an update with new classes), the extra rows keep `net`'s initialisation."""
    target, source = net.state_dict(), base.state_dict()
    with torch.no_grad():
        for key, value in target.items():
            old = source[key]
            if old.shape == value.shape:
                value.copy_(old)
            elif old.shape[1:] == value.shape[1:] and old.shape[0] < value.shape[0]:
                value[: old.shape[0]].copy_(old)
            else:
                raise ValueError(f"cannot warm-start {key} {tuple(value.shape)} from {tuple(old.shape)}")
