"""contracts/architectures.py, the torch-free table the API checks model files against, is
exactly what the engine builds: every tensor name, shape and dtype of every architecture."""

from __future__ import annotations

import pytest
import torch

from contracts.architectures import ARCHITECTURES, IN_CHANNELS, expected_tensors, state_dict_mismatches
from mpt import nets

SAFETENSORS_DTYPE = {torch.float32: "F32", torch.int64: "I64"}


def test_the_table_names_every_architecture_of_the_engine():
    assert set(ARCHITECTURES) == set(nets.ARCHITECTURES)
    assert IN_CHANNELS == (1, 3)


@pytest.mark.parametrize("arch", sorted(nets.ARCHITECTURES))
@pytest.mark.parametrize("num_classes, in_channels", [(1, 1), (7, 3), (100, 1)])
def test_table_equals_the_built_state_dict(arch, num_classes, in_channels):
    state = nets.build_net(arch, num_classes=num_classes, in_channels=in_channels).state_dict()
    built = {name: (tuple(tensor.shape), SAFETENSORS_DTYPE[tensor.dtype]) for name, tensor in state.items()}
    table = expected_tensors(arch, num_classes=num_classes, in_channels=in_channels)
    assert list(table) == list(built)  # same names in the same order
    assert table == built
    assert state_dict_mismatches(arch, num_classes=num_classes, in_channels=in_channels, found=built) == []


def test_mismatches_name_missing_unexpected_and_misshaped_tensors():
    table = expected_tensors("small_cnn", num_classes=3, in_channels=1)
    found = dict(table)
    del found["features.2.0.weight"]
    found["extra.weight"] = ((1,), "F32")
    found["fc.weight"] = ((3, 64), "F32")
    found["fc.bias"] = ((3,), "F16")
    problems = state_dict_mismatches("small_cnn", num_classes=3, in_channels=1, found=found)
    assert problems == [
        "1 missing tensor(s): features.2.0.weight",
        "1 unexpected tensor(s): extra.weight",
        "2 mis-shaped tensor(s): fc.weight [3, 64] F32 (expected [3, 128] F32), fc.bias [3] F16 (expected [3] F32)",
    ]
