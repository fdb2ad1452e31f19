"""Packed students (mpt.packed): each student's maths equals its own network's, alone and in
the training loop."""

from __future__ import annotations

import dataclasses
import warnings

import pytest
import torch
import torch.nn.functional as F
from engine_support import synthetic_images
from safetensors.torch import load_file
from torch import nn

from mpt.data import ImageSet, channel_stats
from mpt.nets import build_net
from mpt.packed import NotPackable, pack, pack_tensors, unpack_into, unpack_tensors
from mpt.recipe import MethodParams, Recipe
from mpt.train import Callbacks, Teachers, TrainingCancelled, TrainingSetup, train_students

STUDENTS, K = 3, 10


def students(arch: str, in_channels: int) -> list[nn.Module]:
    return [build_net(arch, num_classes=K, in_channels=in_channels, seed=seed) for seed in range(STUDENTS)]


def max_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max((a[k].double() - b[k].double()).abs().max().item() for k in a)


@pytest.mark.filterwarnings("ignore:TF32 acceleration on top of oneDNN")  # set by mkldnn.flags itself
@pytest.mark.parametrize("arch", ["small_cnn", "resnet18", "resnet34", "resnet50"])
@pytest.mark.parametrize("in_channels", [1, 3])
def test_packed_logits_equal_separate_nets(arch, in_channels):
    nets = students(arch, in_channels)
    packed = pack(nets)
    x = torch.randn(8, in_channels, 32, 32, generator=torch.Generator().manual_seed(0))
    # Training mode, torch's native kernels: a grouped convolution there is a loop over the
    # groups, so each student's arithmetic is exactly its own network's.
    with torch.backends.mkldnn.flags(enabled=False):
        assert torch.equal(packed(x), torch.stack([net(x) for net in nets]))
    # Evaluation mode, default (oneDNN) kernels: grouped and dense convolutions round
    # differently, within float32's 1e-5.
    packed.eval()
    for net in nets:
        net.eval()
    torch.testing.assert_close(packed(x), torch.stack([net(x) for net in nets]), rtol=0, atol=1e-5)


@pytest.mark.parametrize("arch", ["small_cnn", "resnet18"])
def test_one_packed_sgd_step_equals_separate_steps(arch):
    """Training mode with the default kernels; the loss of the packed net is each student's
    loss summed, so each student's gradient is its own."""
    nets = students(arch, 3)
    packed = pack(nets)
    sgd = dict(lr=0.1, momentum=0.9, weight_decay=5e-4)
    x = torch.randn(16, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    y = torch.randint(0, K, (16,), generator=torch.Generator().manual_seed(2))
    # Two steps (the second uses the first's momentum) where training is stable; resnet18 on
    # random labels at lr 0.1 turns a 1e-7 change of the weights into 2e-3 by its third step
    # (measured with two separately trained copies), so it is compared after one.
    steps = 2 if arch == "small_cnn" else 1
    optimizer = torch.optim.SGD(packed.parameters(), **sgd)
    for _ in range(steps):
        logits = packed(x)
        optimizer.zero_grad()
        sum(F.cross_entropy(logits[i], y) for i in range(STUDENTS)).backward()
        optimizer.step()
    for net in nets:
        optimizer_alone = torch.optim.SGD(net.parameters(), **sgd)
        for _ in range(steps):
            optimizer_alone.zero_grad()
            F.cross_entropy(net(x), y).backward()
            optimizer_alone.step()
    unpacked = students(arch, 3)
    unpack_into(packed, unpacked)
    for alone, from_packed in zip(nets, unpacked, strict=True):
        assert max_difference(alone.state_dict(), from_packed.state_dict()) <= 1e-5


def test_state_dicts_and_buffers_round_trip():
    nets = students("small_cnn", 1)
    packed = pack(nets)
    assert packed.state_dict().keys() == nets[0].state_dict().keys()
    assert [name for name, _ in packed.named_parameters()] == [name for name, _ in nets[0].named_parameters()]
    copies = students("small_cnn", 1)
    with torch.no_grad():
        for copy in copies:
            for p in copy.parameters():
                p.zero_()
    unpack_into(packed, copies)
    for net, copy in zip(nets, copies, strict=True):
        assert max_difference(net.state_dict(), copy.state_dict()) == 0
    buffers = [[torch.full_like(p, float(i)) for p in net.parameters()] for i, net in enumerate(nets)]
    packed_buffers = pack_tensors(buffers)
    assert [b.shape for b in packed_buffers] == [p.shape for p in packed.parameters()]
    for mine, back in zip(buffers, unpack_tensors(packed_buffers, STUDENTS), strict=True):
        assert all(torch.equal(a, b) for a, b in zip(mine, back, strict=True))


def test_unknown_layers_and_mismatched_students_are_refused():
    class WithDropout(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Dropout(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
            self.fc = nn.Linear(4, K)

        def forward(self, x):
            return self.fc(self.body(x))

    with pytest.raises(NotPackable):
        pack([WithDropout(), WithDropout()])
    with pytest.raises(NotPackable, match="differ"):
        pack([build_net("small_cnn", num_classes=n, in_channels=1) for n in (K, 5)])


# ---- packed students in the training loop (mpt.train.train_students, Recipe.pack_students)

K_OLD = 5


def sweep_setup(recipe: Recipe, **changes) -> TrainingSetup:
    images, labels = synthetic_images(20, K, seed=4)
    train_set = ImageSet(
        torch.from_numpy(images).unsqueeze(1), torch.from_numpy(labels).long(), [f"c{i}" for i in range(K)]
    )
    mean, std = channel_stats(train_set.images)
    return TrainingSetup(
        train_set=train_set,
        new_mask=torch.arange(K) >= K_OLD,
        mean=mean,
        std=std,
        recipe=recipe,
        seed=7,
        teachers=Teachers(
            old=build_net("small_cnn", num_classes=K_OLD, in_channels=1, seed=101),
            reference=build_net("small_cnn", num_classes=K, in_channels=1, seed=102),
        ),
        device=torch.device("cpu"),
        **changes,
    )


SWEEP = Recipe(epochs=2, batch_size=64, lr=0.05, poll_every_steps=1, crop_padding=2)
BIASES = (0.0, 2.0, 4.0)


@pytest.fixture
def native_kernels():
    """torch's own CPU convolutions, which run a grouped convolution group by group, so that a
    packed sweep must equal the side-by-side one bit for bit.

    With oneDNN's kernels, grouped and dense convolutions round differently (up to 1.6e-5 in a
    weight after 4 steps of these sweeps, measured), and training turns such differences
    into jumps wherever a max-pool or ReLU decision flips (9e-4 in a running mean after 8).
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "TF32 acceleration on top of oneDNN")  # set by mkldnn.flags itself
        with torch.backends.mkldnn.flags(enabled=False):
            yield


def sweep(setup: TrainingSetup, pack_students: str) -> tuple[list[nn.Module], list[list[dict]]]:
    nets = [build_net("small_cnn", num_classes=K, in_channels=1, seed=1) for _ in BIASES]
    histories = train_students(
        dataclasses.replace(setup, recipe=dataclasses.replace(setup.recipe, pack_students=pack_students)),
        nets=nets,
        methods=["mpt-kl"] * len(BIASES),
        params=[MethodParams(bias=b) for b in BIASES],
    )
    return nets, histories


def test_packed_sweep_equals_students_trained_side_by_side(native_kernels):
    setup = sweep_setup(SWEEP)
    packed, packed_histories = sweep(setup, "on")
    side_by_side, histories = sweep(setup, "off")
    for a, b in zip(packed, side_by_side, strict=True):
        assert max_difference(a.state_dict(), b.state_dict()) == 0
    assert packed_histories == histories
    assert not torch.equal(packed[0].fc.weight, packed[2].fc.weight)  # three different students


def test_a_packed_checkpoint_holds_each_student_and_resumes_either_way(tmp_path, native_kernels):
    """Interrupted packed, resumed side by side: the checkpoint format is per student."""
    setup = sweep_setup(SWEEP)
    straight, straight_histories = sweep(setup, "on")
    checkpoint = tmp_path / "sweep.ckpt"
    with pytest.raises(TrainingCancelled):
        sweep(
            dataclasses.replace(
                setup, checkpoint_path=checkpoint, callbacks=Callbacks(should_cancel=lambda: checkpoint.exists())
            ),
            "on",
        )
    keys = load_file(str(checkpoint)).keys()
    assert {key.partition(".")[0] for key in keys} == {"s0", "s1", "s2"}
    assert "s2.net.fc.weight" in keys and "s2.momentum.0" in keys
    resumed, resumed_histories = sweep(dataclasses.replace(setup, checkpoint_path=checkpoint), "off")
    for a, b in zip(straight, resumed, strict=True):
        assert max_difference(a.state_dict(), b.state_dict()) == 0
    assert resumed_histories == [h[1:] for h in straight_histories]


def test_an_architecture_packing_does_not_know_trains_side_by_side():
    class WithDropout(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(
                nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Dropout(0.0), nn.AdaptiveAvgPool2d(1), nn.Flatten()
            )
            self.fc = nn.Linear(4, K)

        def forward(self, x):
            return self.fc(self.body(x))

    setup = dataclasses.replace(sweep_setup(dataclasses.replace(SWEEP, pack_students="on")), teachers=Teachers())
    nets = [WithDropout() for _ in range(2)]
    histories = train_students(setup, nets=nets, methods=["independent"] * 2, params=[MethodParams()] * 2)
    assert len(histories) == 2 and all(len(h) == SWEEP.epochs for h in histories)
