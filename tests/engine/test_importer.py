"""`mpt import`: a deployed model's weights become a flipguard model file, or are refused by name."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from mpt.artifacts import load_model
from mpt.cli import main
from mpt.importer import parse_class_names, parse_image_size
from mpt.nets import build_net

CLASSES = ["shirt", "shoe", "bag"]
GREY = ["--image-size", "28", "--mean", "0.3", "--std", "0.25"]


def run_import(weights: Path, out: Path, *options: str) -> tuple[int, str, str]:
    """`mpt import` through the CLI's main: (exit code, stdout, stderr)."""
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = main(["import", str(weights), "--out", str(out), *options])
    return code, stdout.getvalue(), stderr.getvalue()


@pytest.fixture()
def small_net() -> torch.nn.Module:
    net = build_net("small_cnn", num_classes=len(CLASSES), in_channels=1, seed=4)
    # Non-default BatchNorm statistics, so that buffers are carried over too.
    with torch.no_grad():
        net.train()(torch.randn(8, 1, 28, 28))
    return net.eval()


def assert_same_network(path: Path, net: torch.nn.Module, *, shape: tuple[int, ...]) -> None:
    loaded = load_model(path)
    x = torch.randn(4, *shape)
    with torch.no_grad():
        assert torch.equal(loaded.net(x), net.eval()(x))


def test_small_cnn_state_dict_with_classes_from_a_file(tmp_path, small_net):
    torch.save(small_net.state_dict(), tmp_path / "model.pth")
    (tmp_path / "classes.txt").write_text("shirt\nshoe\n\nbag\n")
    out = tmp_path / "v1.safetensors"
    code, stdout, stderr = run_import(
        tmp_path / "model.pth", out, "--arch", "small_cnn", "--classes", str(tmp_path / "classes.txt"), *GREY
    )
    assert code == 0, stderr
    assert "3 classes, 1x28x28 inputs" in stdout
    spec = load_model(out).spec
    assert spec.classes == tuple(CLASSES) and spec.in_channels == 1 and spec.image_size == (28, 28)
    assert spec.mean == (0.3,) and spec.std == (0.25,)
    assert_same_network(out, small_net, shape=(1, 28, 28))


@pytest.mark.parametrize(
    "wrap",
    [
        pytest.param(lambda s: s, id="plain"),
        pytest.param(lambda s: {"state_dict": s, "epoch": 7}, id="state_dict-checkpoint"),
        pytest.param(lambda s: {"model": {f"module.{k}": v for k, v in s.items()}}, id="model-dataparallel"),
        pytest.param(
            lambda s: {"model_state_dict": {f"module._orig_mod.{k}": v for k, v in s.items()}}, id="ddp-compile"
        ),
    ],
)
def test_resnet18_checkpoint_variants(tmp_path, wrap):
    net = build_net("resnet18", num_classes=len(CLASSES), in_channels=3, seed=1)
    torch.save(wrap(net.state_dict()), tmp_path / "resnet.pt")
    out = tmp_path / "resnet.safetensors"
    code, _, stderr = run_import(
        tmp_path / "resnet.pt",
        out,
        *("--arch", "resnet18", "--classes", ",".join(CLASSES), "--image-size", "32x40"),
        *("--mean", "0.485,0.456,0.406", "--std", "0.229,0.224,0.225"),
    )
    assert code == 0, stderr
    assert load_model(out).spec.image_size == (32, 40)
    assert_same_network(out, net, shape=(3, 32, 40))


def test_safetensors_input(tmp_path, small_net):
    save_file({k: v.contiguous() for k, v in small_net.state_dict().items()}, str(tmp_path / "model.safetensors"))
    out = tmp_path / "v1.safetensors"
    code, _, stderr = run_import(
        tmp_path / "model.safetensors", out, "--arch", "small_cnn", "--classes", ",".join(CLASSES), *GREY
    )
    assert code == 0, stderr
    assert_same_network(out, small_net, shape=(1, 28, 28))


def refusal(tmp_path: Path, state_or_object, *options: str) -> str:
    """Import what `torch.save` writes of `state_or_object`; assert it is refused; return the message."""
    torch.save(state_or_object, tmp_path / "model.pth")
    out = tmp_path / "refused.safetensors"
    code, _, stderr = run_import(tmp_path / "model.pth", out, *options)
    assert code != 0 and stderr.startswith("error: ")
    assert not out.exists()
    return stderr


SMALL = ("--arch", "small_cnn", "--classes", ",".join(CLASSES), *GREY)


def test_full_pickle_is_refused(tmp_path, small_net):
    message = refusal(tmp_path, small_net, *SMALL)
    assert "this file holds a pickled object, not a state_dict" in message
    assert "mpt.nets.SmallCNN" in message and "save model.state_dict()" in message


def test_wrong_head_size_is_refused(tmp_path, small_net):
    message = refusal(tmp_path, small_net.state_dict(), "--arch", "small_cnn", "--classes", "shirt,shoe", *GREY)
    assert "the head fc.weight has 3 rows but 2 classes were given" in message


def test_missing_tensor_is_refused(tmp_path, small_net):
    state = small_net.state_dict()
    del state["features.2.1.running_var"]
    message = refusal(tmp_path, state, *SMALL)
    assert "does not fit small_cnn with 3 classes: missing features.2.1.running_var" in message


def test_unexpected_tensor_is_refused(tmp_path, small_net):
    state = small_net.state_dict() | {"projection.weight": torch.zeros(4, 4)}
    message = refusal(tmp_path, state, *SMALL)
    assert "unexpected projection.weight" in message


def test_mis_shaped_tensor_is_refused(tmp_path):
    state = build_net("resnet18", num_classes=3, in_channels=3, seed=0).state_dict()
    state["layer2.0.conv1.weight"] = torch.zeros(128, 64, 1, 1)
    message = refusal(
        tmp_path,
        state,
        *("--arch", "resnet18", "--classes", ",".join(CLASSES), "--image-size", "32"),
        *("--mean", "0.5,0.5,0.5", "--std", "0.2,0.2,0.2"),
    )
    assert "1 tensor(s) of the wrong shape: layer2.0.conv1.weight (128, 64, 1, 1) != (128, 64, 3, 3)" in message


def test_normalisation_must_match_the_channels(tmp_path, small_net):
    message = refusal(
        tmp_path,
        small_net.state_dict(),
        *("--arch", "small_cnn", "--classes", ",".join(CLASSES), "--image-size", "28"),
        *("--mean", "0.5,0.5,0.5", "--std", "0.2,0.2,0.2"),
    )
    assert "mean has 3 value(s) but the model takes 1 input channel(s)" in message


def test_a_dict_of_other_objects_is_not_a_state_dict(tmp_path, small_net):
    message = refusal(tmp_path, {"weights": small_net.state_dict(), "note": "v1"}, *SMALL)
    assert "is not a state_dict: weights, note are not tensors" in message


def test_class_names_and_image_sizes():
    assert parse_class_names(" a, b ,c ") == ["a", "b", "c"]
    assert parse_image_size("224") == (224, 224) and parse_image_size("32x48") == (32, 48)
    with pytest.raises(ValueError, match="unique; repeated: a"):
        parse_class_names("a,b,a")
    with pytest.raises(ValueError, match="image size"):
        parse_image_size("0x3")
