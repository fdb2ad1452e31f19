"""Model files: round trip, and every way a file can be wrong -> ArtifactError."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from mpt.artifacts import ArtifactError, ModelSpec, file_sha256, load_model, save_model
from mpt.nets import build_net

CLASSES = tuple(f"c{i}" for i in range(10))


def spec(classes=CLASSES, arch="small_cnn") -> ModelSpec:
    return ModelSpec(arch=arch, classes=tuple(classes), in_channels=1, image_size=(28, 28), mean=(0.3,), std=(0.25,))


@pytest.fixture()
def saved(tmp_path):
    net = build_net("small_cnn", num_classes=10, in_channels=1, seed=3)
    # Non-trivial BatchNorm statistics, so that buffers are checked too.
    net.train()
    with torch.no_grad():
        net(torch.randn(16, 1, 28, 28))
    net.eval()
    path = tmp_path / "model.safetensors"
    digest = save_model(path, net, spec())
    return path, digest, net


def test_round_trip_gives_identical_logits(saved):
    path, digest, net = saved
    assert digest == file_sha256(path) and len(digest) == 64
    loaded = load_model(path, sha256=digest)
    assert loaded.spec == spec()
    assert not loaded.net.training
    x = torch.randn(8, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(loaded.net(x), net(x))
    for key, value in net.state_dict().items():
        assert torch.equal(loaded.net.state_dict()[key], value), key
    assert not path.with_suffix(".safetensors.tmp").exists()


def test_sha256_mismatch(saved):
    path, _, _ = saved
    with pytest.raises(ArtifactError, match="sha256 does not match"):
        load_model(path, sha256="0" * 64)


def test_wrong_shape_tensors(tmp_path):
    # The metadata claims 10 classes but the head has 5 outputs.
    net5 = build_net("small_cnn", num_classes=5, in_channels=1, seed=0)
    path = tmp_path / "liar.safetensors"
    save_model(path, net5, spec(CLASSES))
    with pytest.raises(ArtifactError) as info:
        load_model(path)
    message = str(info.value)
    assert "small_cnn with 10 classes" in message
    assert "wrong shape" in message and "fc." in message and "(5" in message


def test_missing_and_unexpected_tensors(tmp_path):
    net = build_net("small_cnn", num_classes=10, in_channels=1, seed=0)
    state = {k: v.contiguous() for k, v in net.state_dict().items() if k != "fc.bias"}
    state["extra.weight"] = torch.zeros(2)
    path = tmp_path / "partial.safetensors"
    save_file(state, str(path), metadata=spec().to_metadata())
    with pytest.raises(ArtifactError, match=r"missing fc\.bias.*unexpected extra\.weight"):
        load_model(path)


@pytest.mark.parametrize("keep", [0.5, 0.02])
def test_truncated_file(saved, keep):
    path, _, _ = saved
    raw = path.read_bytes()
    path.write_bytes(raw[: int(len(raw) * keep)])
    with pytest.raises(ArtifactError, match="not a readable safetensors file"):
        load_model(path)


def test_garbage_file(tmp_path):
    path = tmp_path / "garbage.safetensors"
    path.write_bytes(b"\x13\x00\x00\x00\x00\x00\x00\x00{not json at all!!}" + b"\x00" * 40)
    with pytest.raises(ArtifactError, match="not a readable safetensors file"):
        load_model(path)
    path.write_bytes(b"")
    with pytest.raises(ArtifactError, match="not a readable safetensors file"):
        load_model(path)


def test_corrupted_tensor_bytes_are_caught_by_the_digest(saved):
    path, digest, _ = saved
    raw = bytearray(path.read_bytes())
    raw[-10] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(ArtifactError, match="sha256"):
        load_model(path, sha256=digest)


def test_missing_metadata(tmp_path):
    net = build_net("small_cnn", num_classes=10, in_channels=1, seed=0)
    path = tmp_path / "bare.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    with pytest.raises(ArtifactError, match="metadata is missing or malformed"):
        load_model(path)


def test_partial_and_malformed_metadata(tmp_path):
    net = build_net("small_cnn", num_classes=10, in_channels=1, seed=0)
    state = {k: v.contiguous() for k, v in net.state_dict().items()}
    metadata = spec().to_metadata()
    del metadata["flipguard.std"]
    path = tmp_path / "partial.safetensors"
    save_file(state, str(path), metadata=metadata)
    with pytest.raises(ArtifactError, match="metadata"):
        load_model(path)
    metadata = spec().to_metadata()
    metadata["flipguard.classes"] = "[not json"
    save_file(state, str(path), metadata=metadata)
    with pytest.raises(ArtifactError, match="metadata"):
        load_model(path)


def test_unknown_architecture(tmp_path):
    net = build_net("small_cnn", num_classes=10, in_channels=1, seed=0)
    path = tmp_path / "odd.safetensors"
    save_model(path, net, spec(arch="vgg99"))
    with pytest.raises(ArtifactError, match="unknown architecture 'vgg99'"):
        load_model(path)


def test_non_finite_weights(tmp_path):
    net = build_net("small_cnn", num_classes=10, in_channels=1, seed=0)
    with torch.no_grad():
        net.fc.weight[0, 0] = float("nan")
    path = tmp_path / "nan.safetensors"
    save_model(path, net, spec())
    with pytest.raises(ArtifactError, match="non-finite"):
        load_model(path)


def test_missing_file(tmp_path):
    with pytest.raises(ArtifactError, match="no model file"):
        load_model(tmp_path / "absent.safetensors")


def test_metadata_is_json_strings():
    metadata = spec().to_metadata()
    assert metadata["flipguard.arch"] == "small_cnn"
    assert json.loads(metadata["flipguard.classes"]) == list(CLASSES)
    assert ModelSpec.from_metadata(metadata) == spec()
