"""Bring your own model: a torchvision resnet18's state_dict saved by the user, `mpt import`, the
upload through the client CLI (`POST /models`), an update on a folder of colour photos."""

from __future__ import annotations

import contextlib
import io
import subprocess
import sys
from pathlib import Path

import torch
import torchvision

from api.cli.app import main as client_cli
from mpt.cli import main
from scripts.stack import ROOT
from tests.integration.conftest import SMALL_RECIPE, Api
from tests.integration.photos import FOLDERS, data_root, photo_folder

OLD = FOLDERS[:5]  # T-shirt-top, Trouser, Pullover, Dress, Coat: the folder names of the data set
IMAGE_SIZE = 32
# The ImageNet statistics torchvision's models are usually trained with.
NORMALISATION = [
    *("--image-size", f"{IMAGE_SIZE}x{IMAGE_SIZE}"),
    *("--mean", "0.485,0.456,0.406", "--std", "0.229,0.224,0.225"),
]


def mpt_import_process(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mpt.cli", "import", *argv], cwd=ROOT, capture_output=True, text=True, timeout=300
    )


def in_process_import(weights: Path, out: Path, *options: str) -> tuple[int, str]:
    """`mpt import` through the CLI's main: (exit code, stderr)."""
    stderr = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(stderr):
        code = main(["import", str(weights), "--out", str(out), *options])
    return code, stderr.getvalue()


def test_torchvision_model_is_imported_registered_and_updated(embedded_stack, tmp_path: Path):
    api = Api(embedded_stack)
    torch.manual_seed(11)
    deployed = torchvision.models.resnet18(num_classes=len(OLD))
    state = deployed.state_dict()
    torch.save(state, tmp_path / "model.pth")
    (tmp_path / "classes.txt").write_text("\n".join(OLD) + "\n")
    options = ["--arch", "resnet18", "--classes", str(tmp_path / "classes.txt"), *NORMALISATION]

    code, message = in_process_import(tmp_path / "model.pth", tmp_path / "in-process.safetensors", *options)
    assert code == 0, message
    imported = mpt_import_process(str(tmp_path / "model.pth"), "--out", str(tmp_path / "v1.safetensors"), *options)
    assert imported.returncode == 0, imported.stderr
    assert f"5 classes, 3x{IMAGE_SIZE}x{IMAGE_SIZE} inputs" in imported.stdout

    # Refused, each with what to do: the whole pickled model, a head of another size, a tensor left out.
    torch.save(deployed, tmp_path / "whole-model.pth")
    refused = mpt_import_process(str(tmp_path / "whole-model.pth"), "--out", str(tmp_path / "no.safetensors"), *options)
    assert refused.returncode != 0 and "holds a pickled object, not a state_dict" in refused.stderr
    four = ["--arch", "resnet18", "--classes", ",".join(OLD[:4]), *NORMALISATION]
    code, message = in_process_import(tmp_path / "model.pth", tmp_path / "no.safetensors", *four)
    assert code != 0 and "the head fc.weight has 5 rows but 4 classes were given" in message
    torch.save({k: v for k, v in state.items() if k != "layer1.0.bn1.running_var"}, tmp_path / "partial.pth")
    code, message = in_process_import(tmp_path / "partial.pth", tmp_path / "no.safetensors", *options)
    assert code != 0 and "does not fit resnet18 with 5 classes: missing layer1.0.bn1.running_var" in message

    connection = ["--url", api.stack.url, "--token", api.stack.token]
    uploaded = io.StringIO()
    with contextlib.redirect_stdout(uploaded):
        code = client_cli([*connection, "models", "upload", str(tmp_path / "v1.safetensors"), "--family", "imported"])
    assert code == 0 and "imported v1 production (resnet18, 5 classes)" in uploaded.getvalue()
    [v1] = api.ok(api.http.get("/models", params={"family": "imported"}))["items"]
    assert v1["version"] == 1 and v1["status"] == "production" and v1["classes"] == OLD
    assert v1["architecture"] == "resnet18"

    # Ten classes, the five old among them, with the images SMALL_RECIPE takes per class.
    photos = photo_folder(
        data_root(embedded_stack) / "import-photos",
        classes=10,
        train_per_class=SMALL_RECIPE["train_samples_per_class"],
        test_per_class=SMALL_RECIPE["eval_samples_per_class"],
    )
    dataset = api.register_dataset(name="photos-import", uri=str(photos), data_format="imagefolder")
    assert dataset["status"] == "ready", dataset
    assert dataset["classes"] == sorted(FOLDERS) and dataset["image_summary"]["channels"] == 3
    # Warm start, the natural choice for a model trained elsewhere: it travels API -> worker -> engine.
    recipe = SMALL_RECIPE | {"warm_start": True, "image_size": IMAGE_SIZE}
    job = api.submit(
        {
            "base_model_id": v1["id"],
            "dataset_id": dataset["id"],
            "method": "mpt-kl",
            "method_params": {"bias": 4.0},  # one student, no sweep: this test is about the import
            "recipe": recipe,
            "seed": 0,
        }
    )
    job = api.wait_job(job["id"])
    assert job["status"] == "succeeded", job
    v2 = api.ok(api.http.get(f"/models/{job['result_model_id']}"))
    assert v2["version"] == 2 and v2["parent_id"] == v1["id"] and v2["classes"][:5] == OLD and len(v2["classes"]) == 10
    assert v2["architecture"] == "resnet18" and v2["recipe"]["warm_start"] is True
    flips = api.ok(api.http.get(f"/models/{v2['id']}/flips"))
    assert flips["figures"]["scopes"]["old_classes"]["samples"] == 5 * SMALL_RECIPE["eval_samples_per_class"]
