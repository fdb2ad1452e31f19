"""Bring your own model: a state_dict saved by the user, `mpt import`, the upload through the
client CLI (`POST /models`), an update."""

from __future__ import annotations

import contextlib
import io
import subprocess
import sys
from pathlib import Path

import torch

from api.cli.app import main as client_cli
from mpt.cli import main
from mpt.nets import build_net
from scripts.stack import ROOT
from tests.integration.conftest import SMALL_RECIPE, Api

OLD = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat"]
# Fashion-MNIST's pixel statistics, as the user's own training code would have used them.
NORMALISATION = ["--image-size", "28x28", "--mean", "0.2860", "--std", "0.3530"]


def mpt_import_process(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mpt.cli", "import", *argv], cwd=ROOT, capture_output=True, text=True, timeout=300
    )


def test_imported_model_is_registered_and_updated(embedded_stack, tmp_path: Path):
    api = Api(embedded_stack)
    deployed = build_net("small_cnn", num_classes=len(OLD), in_channels=1, seed=11)
    torch.save(deployed.state_dict(), tmp_path / "model.pth")
    (tmp_path / "classes.txt").write_text("\n".join(OLD) + "\n")
    options = ["--arch", "small_cnn", "--classes", str(tmp_path / "classes.txt"), *NORMALISATION]

    assert (
        main(["import", str(tmp_path / "model.pth"), "--out", str(tmp_path / "in-process.safetensors"), *options]) == 0
    )
    imported = mpt_import_process(str(tmp_path / "model.pth"), "--out", str(tmp_path / "v1.safetensors"), *options)
    assert imported.returncode == 0, imported.stderr
    assert "5 classes, 1x28x28 inputs" in imported.stdout

    torch.save(deployed, tmp_path / "whole-model.pth")
    refused = mpt_import_process(str(tmp_path / "whole-model.pth"), "--out", str(tmp_path / "no.safetensors"), *options)
    assert refused.returncode != 0 and "holds a pickled object, not a state_dict" in refused.stderr

    connection = ["--url", api.stack.url, "--token", api.stack.token]
    uploaded = io.StringIO()
    with contextlib.redirect_stdout(uploaded):
        code = client_cli([*connection, "models", "upload", str(tmp_path / "v1.safetensors"), "--family", "imported"])
    assert code == 0 and "imported v1 production (small_cnn, 5 classes)" in uploaded.getvalue()
    [v1] = api.ok(api.http.get("/models", params={"family": "imported"}))["items"]
    assert v1["version"] == 1 and v1["status"] == "production" and v1["classes"] == OLD
    assert v1["architecture"] == "small_cnn"

    dataset = api.register_dataset(name="fmnist-import")
    assert dataset["status"] == "ready", dataset
    # Warm start, the natural choice for a model trained elsewhere: it travels API -> worker -> engine.
    recipe = SMALL_RECIPE | {"warm_start": True}
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
    assert v2["recipe"]["warm_start"] is True
    flips = api.ok(api.http.get(f"/models/{v2['id']}/flips"))
    assert flips["figures"]["scopes"]["old_classes"]["samples"] == 5 * SMALL_RECIPE["eval_samples_per_class"]
