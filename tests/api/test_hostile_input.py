"""Hostile input: paths that escape the data roots, files that are not safetensors, weights that
do not fit their metadata, oversized bodies. Each is a 4xx naming the field, and nothing stored
before (the base model, every version, their files) changes."""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
from api_helpers import assert_error, model_file, upload
from safetensors import safe_open
from safetensors.numpy import save_file


def store_snapshot(settings) -> dict[str, str]:
    """sha256 of every file in the artifact store."""
    root = Path(settings.artifact_root)
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def raw_upload(client, name: str, content: bytes, family="shoes"):
    return client.post("/models", data={"family": family}, files={"file": (name, content, "application/octet-stream")})


@pytest.fixture
def outside(tmp_path) -> Path:
    """A folder next to the data root (not inside it) holding a valid model and a data set."""
    folder = tmp_path / "outside"
    folder.mkdir()
    model_file(folder / "m.safetensors")
    (folder / "dataset").mkdir()
    return folder


def escaping_uris(tmp_path, outside: Path) -> dict[str, str]:
    """uris that name something outside the data root, one per trick."""
    data = tmp_path / "data"
    (data / "link-to-file.safetensors").symlink_to(outside / "m.safetensors")
    (data / "link-to-dir").symlink_to(outside)
    return {
        "outside": str(outside / "m.safetensors"),
        "dotdot": f"{data}/../outside/m.safetensors",
        "file-scheme-dotdot": f"file://{data}/../outside/m.safetensors",
        "symlinked file": str(data / "link-to-file.safetensors"),
        "through a symlinked folder": str(data / "link-to-dir" / "m.safetensors"),
        "relative": "outside/m.safetensors",
        "etc": "/etc/passwd",
        "root": "/",
    }


def test_dataset_uris_outside_the_roots_are_refused(client, tmp_path, outside):
    for uri in escaping_uris(tmp_path, outside).values():
        dataset_uri = uri.replace("m.safetensors", "dataset") if "m.safetensors" in uri else uri
        response = client.post("/datasets", json={"name": "x", "uri": dataset_uri, "format": "imagefolder"})
        assert_error(response, 422, ["body", "uri"])
    assert client.get("/datasets").json()["total"] == 0


def test_hostile_model_files_change_nothing_stored(client, settings, tmp_path, outside):
    base = upload(client, model_file(tmp_path / "v1.safetensors")).json()
    by_uri = client.post("/models", json={"family": "shoes", "uri": model_file(tmp_path / "data" / "v2.safetensors")})
    assert by_uri.status_code == 201, by_uri.text
    before_files, before_rows = store_snapshot(settings), client.get("/models").json()

    for uri in escaping_uris(tmp_path, outside).values():
        assert_error(client.post("/models", json={"family": "shoes", "uri": uri}), 422, ["body", "uri"])

    valid = Path(model_file(tmp_path / "valid.safetensors")).read_bytes()
    zipped = io.BytesIO()
    with zipfile.ZipFile(zipped, "w") as archive:
        archive.writestr("archive/data.pkl", pickle.dumps({"fc.weight": [1.0]}))
    refused = {
        "a Python pickle": pickle.dumps({"fc.weight": [[1.0]]}, protocol=4),
        "a zip archive": zipped.getvalue(),
        "not a safetensors file": os.urandom(4096),
        "corrupt safetensors": valid[: len(valid) - 16],
        "empty": b"",
    }
    for expected, content in refused.items():
        response = raw_upload(client, "weights.bin", content)
        assert_error(response, 422, ["body", "file"], expected if expected != "empty" else "safetensors")
        assert "only safetensors" in response.json()["detail"][0]["msg"] or expected == "corrupt safetensors"

    wrong_head = model_file(tmp_path / "w.safetensors", classes=("sandal", "sneaker", "boot"), outputs=5)
    assert_error(upload(client, wrong_head), 422, ["body", "file"], "fc.weight [5, 128] F32 (expected [3, 128] F32)")
    (tmp_path / "data" / "w.safetensors").write_bytes(Path(wrong_head).read_bytes())
    assert_error(
        client.post("/models", json={"family": "shoes", "uri": str(tmp_path / "data" / "w.safetensors")}),
        422,
        ["body", "uri"],
        "fc.weight [5, 128] F32 (expected [3, 128] F32)",
    )
    unknown_arch = model_file(tmp_path / "u.safetensors", metadata={"flipguard.arch": "alexnet"})
    assert_error(upload(client, unknown_arch), 422, ["body", "file"], "unknown flipguard.arch")
    too_big = tmp_path / "data" / "big.safetensors"
    too_big.write_bytes(b"\0" * (settings.max_upload_bytes + 1))
    assert_error(client.post("/models", json={"family": "shoes", "uri": str(too_big)}), 413, ["body", "uri"])
    assert_error(raw_upload(client, "big", b"\0" * (settings.max_upload_bytes + 1)), 413, ["body", "file"])

    assert store_snapshot(settings) == before_files
    assert client.get("/models").json() == before_rows
    assert client.get(f"/models/{base['id']}/weights").content == (tmp_path / "v1.safetensors").read_bytes()


def test_head_keys_mirror_the_engine_architectures():
    from contracts.model_file import HEAD_WEIGHT_KEYS
    from mpt.nets import ARCHITECTURES, build_net

    assert set(HEAD_WEIGHT_KEYS) == set(ARCHITECTURES)
    for arch, key in HEAD_WEIGHT_KEYS.items():
        state = build_net(arch, num_classes=7, in_channels=1).state_dict()
        assert state[key].shape[0] == 7, arch
        assert list(state)[-2:] == [key, key.replace("weight", "bias")], arch


def test_model_files_must_hold_the_whole_state_dict_of_their_architecture(client, settings, tmp_path):
    """A file with only the classifier (the right rows for its classes), a tensor missing, an
    extra one, or one of the wrong dtype is refused before anything is stored."""
    head_only = tmp_path / "head.safetensors"
    model_file(head_only)
    tensors = {"fc.weight": np.ones((3, 128), np.float32)}
    with safe_open(str(head_only), framework="numpy") as handle:
        save_file(tensors, str(head_only), metadata=handle.metadata())
    response = upload(client, head_only)
    assert_error(response, 422, ["body", "file"], "missing tensor(s): features.0.0.weight, features.0.1.weight")
    assert "with 3 classes and 1 input channel(s)" in response.json()["detail"][0]["msg"]
    cases = {
        "missing": ({"features.4.1.running_var": None}, "1 missing tensor(s): features.4.1.running_var"),
        "unexpected": ({"head.extra": np.ones(2, np.float32)}, "1 unexpected tensor(s): head.extra"),
        "wrong dtype": (
            {"fc.bias": np.ones(3, np.float16)},
            "1 mis-shaped tensor(s): fc.bias [3] F16 (expected [3] F32)",
        ),
        "wrong shape": (
            {"features.0.0.weight": np.ones((32, 3, 3, 3), np.float32)},
            "features.0.0.weight [32, 3, 3, 3] F32 (expected [32, 1, 3, 3] F32)",
        ),
    }
    for name, (tensors, message) in cases.items():
        response = upload(client, model_file(tmp_path / f"{name}.safetensors", tensors=tensors))
        assert_error(response, 422, ["body", "file"], message)
    assert store_snapshot(settings) == {}
    assert client.get("/models").json()["total"] == 0
    assert upload(client, model_file(tmp_path / "whole.safetensors")).status_code == 201
