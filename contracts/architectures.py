"""Every tensor of each architecture's state dict, as a function of (num_classes, in_channels),
without torch: the API checks uploaded model files against it (every name, shape and dtype),
and tests/engine/test_architectures.py asserts that it equals `mpt.nets.build_net(...).state_dict()`.

Dtypes are safetensors' names (`F32`, `I64`), the ones `mpt.artifacts.save_model` writes.
"""

from __future__ import annotations

from collections.abc import Callable

Shape = tuple[int, ...]
TensorTable = dict[str, tuple[Shape, str]]

FLOAT = "F32"
# BatchNorm counts its updates in an int64 scalar.
COUNTER = "I64"
# mpt.nets.build_net accepts these input channel counts.
IN_CHANNELS = (1, 3)


def _conv(table: TensorTable, name: str, c_out: int, c_in: int, kernel: int) -> None:
    table[f"{name}.weight"] = ((c_out, c_in, kernel, kernel), FLOAT)


def _batch_norm(table: TensorTable, name: str, channels: int) -> None:
    for key in ("weight", "bias", "running_mean", "running_var"):
        table[f"{name}.{key}"] = ((channels,), FLOAT)
    table[f"{name}.num_batches_tracked"] = ((), COUNTER)


def _linear(table: TensorTable, name: str, c_out: int, c_in: int) -> None:
    table[f"{name}.weight"] = ((c_out, c_in), FLOAT)
    table[f"{name}.bias"] = ((c_out,), FLOAT)


def small_cnn(num_classes: int, in_channels: int, width: int = 32) -> TensorTable:
    """mpt.nets.SmallCNN: three conv + batch-norm blocks (two max-pools between) and a linear head."""
    table: TensorTable = {}
    channels = in_channels
    for index, c_out in zip((0, 2, 4), (width, 2 * width, 4 * width), strict=True):
        _conv(table, f"features.{index}.0", c_out, channels, 3)
        _batch_norm(table, f"features.{index}.1", c_out)
        channels = c_out
    _linear(table, "fc", num_classes, channels)
    return table


def _resnet(blocks: tuple[int, int, int, int], *, bottleneck: bool) -> Callable[[int, int], TensorTable]:
    """torchvision's ResNet with BasicBlock (expansion 1) or Bottleneck (expansion 4) blocks."""
    expansion = 4 if bottleneck else 1

    def table_of(num_classes: int, in_channels: int) -> TensorTable:
        table: TensorTable = {}
        _conv(table, "conv1", 64, in_channels, 7)
        _batch_norm(table, "bn1", 64)
        inplanes = 64
        for layer, (planes, count) in enumerate(zip((64, 128, 256, 512), blocks, strict=True), start=1):
            for block in range(count):
                prefix = f"layer{layer}.{block}"
                stride = 2 if layer > 1 and block == 0 else 1
                if bottleneck:
                    _conv(table, f"{prefix}.conv1", planes, inplanes, 1)
                    _batch_norm(table, f"{prefix}.bn1", planes)
                    _conv(table, f"{prefix}.conv2", planes, planes, 3)
                    _batch_norm(table, f"{prefix}.bn2", planes)
                    _conv(table, f"{prefix}.conv3", planes * expansion, planes, 1)
                    _batch_norm(table, f"{prefix}.bn3", planes * expansion)
                else:
                    _conv(table, f"{prefix}.conv1", planes, inplanes, 3)
                    _batch_norm(table, f"{prefix}.bn1", planes)
                    _conv(table, f"{prefix}.conv2", planes, planes, 3)
                    _batch_norm(table, f"{prefix}.bn2", planes)
                if block == 0 and (stride != 1 or inplanes != planes * expansion):
                    _conv(table, f"{prefix}.downsample.0", planes * expansion, inplanes, 1)
                    _batch_norm(table, f"{prefix}.downsample.1", planes * expansion)
                inplanes = planes * expansion
        _linear(table, "fc", num_classes, 512 * expansion)
        return table

    return table_of


ARCHITECTURES: dict[str, Callable[[int, int], TensorTable]] = {
    "small_cnn": small_cnn,
    "resnet18": _resnet((2, 2, 2, 2), bottleneck=False),
    "resnet34": _resnet((3, 4, 6, 3), bottleneck=False),
    "resnet50": _resnet((3, 4, 6, 3), bottleneck=True),
}


def expected_tensors(arch: str, *, num_classes: int, in_channels: int) -> TensorTable:
    """{tensor name: (shape, dtype)} of the architecture's state dict; KeyError if unknown."""
    return ARCHITECTURES[arch](num_classes, in_channels)


def state_dict_mismatches(arch: str, *, num_classes: int, in_channels: int, found: TensorTable) -> list[str]:
    """What keeps `found` ({name: (shape, dtype)}) from being the architecture's state dict,
    one line per kind of problem (missing, unexpected, wrong shape or dtype); empty if it fits."""
    expected = expected_tensors(arch, num_classes=num_classes, in_channels=in_channels)
    missing = [name for name in expected if name not in found]
    unexpected = sorted(name for name in found if name not in expected)
    wrong = [
        f"{name} {list(found[name][0])} {found[name][1]} (expected {list(shape)} {dtype})"
        for name, (shape, dtype) in expected.items()
        if name in found and (tuple(found[name][0]), found[name][1]) != (shape, dtype)
    ]
    problems = []
    for label, names in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", wrong)):
        if names:
            shown = ", ".join(names[:8]) + (f" and {len(names) - 8} more" if len(names) > 8 else "")
            problems.append(f"{len(names)} {label} tensor(s): {shown}")
    return problems
