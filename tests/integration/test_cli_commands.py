"""The client CLI (`python -m api.cli`) as a person runs it: a subprocess per command against a
real stack (API server and Celery worker processes), its output and its exit code.

Exit codes under test: 0 success, 1 failed, 2 usage, 3 gate-rejected, 4 cancelled, 5 unreachable.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from scripts.stack import ROOT, Stack
from tests.integration.conftest import FASHION_MNIST, SMALL_RECIPE, Api

OLD = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat"]
RECIPE_ARGS = [arg for key, value in SMALL_RECIPE.items() for arg in ("--recipe", f"{key}={value}")]


class Cli:
    """Runs `python -m api.cli` against a stack with its admin token."""

    def __init__(self, stack: Stack):
        self.stack = stack
        self.env = {
            **os.environ,
            "FLIPGUARD_URL": stack.url,
            "FLIPGUARD_TOKEN": stack.token or "",
            "COLUMNS": "200",
            "PYTHONUNBUFFERED": "1",
        }

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "api.cli", *args]

    def __call__(self, *args: str, code: int = 0, timeout: float = 600) -> str:
        """Run a command; assert its exit code; return stdout and stderr together."""
        done = subprocess.run(
            self.command(*args), cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=timeout
        )
        output = done.stdout + done.stderr
        assert done.returncode == code, f"{args} exited {done.returncode}, not {code}:\n{output}"
        return output

    def stdout(self, *args: str) -> str:
        done = subprocess.run(self.command(*args), cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout


def submit(cli: Cli, *args: str, code: int = 0) -> str:
    return cli("updates", "submit", *args, *RECIPE_ARGS, "--watch", "--interval", "0.5", code=code)


@pytest.fixture(scope="module")
def cli(embedded_stack) -> Cli:
    return Cli(embedded_stack)


@pytest.fixture(scope="module")
def story(cli, embedded_stack) -> dict:
    """A data set, v1 (five classes, in production), v2 rejected by its gate, v3 passing."""
    added = cli("datasets", "add", "fmnist-cli", FASHION_MNIST, "--format", "fashion-mnist", "--wait")
    assert "ready" in added and "T-shirt/top" in added
    api = Api(embedded_stack)
    dataset = api.ok(api.http.get("/datasets"))["items"][0]
    # Class names with spaces after the commas, as people type them.
    first = submit(
        cli,
        "--dataset", str(dataset["id"]), "--family", "fmnist", "--architecture", "small_cnn",
        "--classes", ", ".join(OLD), "--auto-promote",
    )  # fmt: skip
    assert "registered model 1 (fmnist v1)" in first and "status production" in first
    # b given: one student, so the progress reads "training" (test_a_sweep_prints_its_candidates sweeps).
    rejected = submit(
        cli, "--base", "1", "--dataset", str(dataset["id"]), "--param", "bias=4", "--min-accuracy", "0.99", code=3
    )
    passed = submit(cli, "--base", "1", "--dataset", str(dataset["id"]), "--method", "pct-kl", "--max-nfr", "1")
    return {"api": api, "dataset": dataset, "rejected": rejected, "passed": passed}


def test_help_lists_every_command_and_the_exit_codes(cli):
    top = cli("--help")
    for command in (
        "datasets add",
        "models list",
        "models download",
        "updates submit",
        "updates watch",
        "flips",
        "compare",
    ):
        assert command in top, command
    assert "3 the gate rejected" in top and "4 the job was cancelled" in top
    submit_help = cli("updates", "submit", "--help")
    assert "mpt-kl|mpt-lm" in submit_help and "small_cnn|resnet18" in submit_help
    assert "mpt-kl; independent without --base" in submit_help and "the base model's" in submit_help


def test_usage_and_unreachable_exit_codes(cli):
    assert "Invalid value" in cli("updates", "submit", "--dataset", "1", "--method", "bogus", code=2)
    assert "cannot reach the API" in cli("--url", "http://127.0.0.1:9", "models", "list", code=5)
    assert "--token" in cli("--token", "not-a-token", "models", "list", code=1)


def test_datasets_commands(cli, story, tmp_path):
    listing = cli("datasets", "list")
    assert "fmnist-cli" in listing and "ready" in listing and "60000" in listing
    shown = cli("datasets", "show", str(story["dataset"]["id"]))
    assert "10: T-shirt/top, Trouser" in shown and "60000 / 10000" in shown
    folder = Path(story["api"].stack.env["FLIPGUARD_ARTIFACT_ROOT"]).parent / "data" / "a-folder"
    folder.mkdir(parents=True, exist_ok=True)
    refused = cli("datasets", "add", "not-npz", str(folder), "--format", "npz", code=1)
    assert "URI: format npz needs a .npz file" in refused
    outside = cli("datasets", "add", "etc", "/etc", "--format", "imagefolder", code=1)
    assert "FLIPGUARD_DATA_ROOTS" in outside


def test_gate_rejection_exits_3_and_says_why(cli, story):
    assert "the gate rejected it" in story["rejected"] and "min_accuracy 0.99" in story["rejected"]
    assert "registered model 2" not in story["rejected"]
    # Progress lines name the phase (and its epoch once one is known), never "evaluating evaluating".
    assert "running · training" in story["rejected"] and "evaluating · evaluating" not in story["rejected"]
    # Watching the finished job again gives the same verdict.
    assert "the gate rejected it" in cli("updates", "watch", "2", "--interval", "0.2", code=3)
    assert "registered model 3" in story["passed"]


def test_a_sweep_prints_its_candidates(cli, story):
    dataset = str(story["dataset"]["id"])
    too_many = cli(
        "updates", "submit", "--base", "1", "--dataset", dataset, "--sweep", "bias=0,1,2,3,4,5,6,7,8", code=1
    )
    assert "--sweep bias" in too_many and "at most 8" in too_many
    swept = submit(
        cli, "--base", "1", "--dataset", dataset, "--sweep", "bias=0,4", "--selection", "policy=max_accuracy",
        "--max-nfr-ratio", "100",
    )  # fmt: skip
    job = story["api"].ok(story["api"].http.get("/updates", params={"page_size": 1}))["items"][0]
    detail = story["api"].ok(story["api"].http.get(f"/updates/{job['id']}"))
    winner = next(c["label"] for c in detail["candidates"] if c["chosen"])
    assert f"candidates of job {job['id']}" in swept and "independent retrain" in swept
    assert all(label in swept for label in ("bias=0", "bias=4")) and "* registered" in swept
    assert "rule: max_accuracy" in swept and "choice: " in swept and winner in swept.split("choice: ")[1]
    assert f"registered model {detail['result_model_id']}" in swept
    shown = cli("updates", "show", str(job["id"]))
    assert "sweep" in shown and "candidates of job" in shown and "max NFR ratio vs retrain 100" in shown


def test_updates_list_show(cli, story):
    listing = cli("updates", "list")
    assert all(f" {job} " in listing for job in ("1", "2", "3")) and "succeeded" in listing
    shown = cli("updates", "show", "2")
    assert "min accuracy 0.99" in shown and "/updates/2/reference/weights" in shown and "per-epoch events" in shown


def test_failed_job_exits_1_with_its_reason(cli, story, embedded_stack):
    weights = (
        Path(embedded_stack.env["FLIPGUARD_ARTIFACT_ROOT"])
        / story["api"].ok(story["api"].http.get("/models/1"))["artifact_uri"]
    )
    original = weights.read_bytes()
    weights.write_bytes(original[:-100] + b"\0" * 100)
    try:
        failed = submit(cli, "--base", "1", "--dataset", str(story["dataset"]["id"]), "--seed", "7", code=1)
    finally:
        weights.write_bytes(original)
    assert "failed" in failed and "sha256" in failed


def test_cancelled_job_exits_4(cli, story):
    long = {**SMALL_RECIPE, "epochs": 200, "train_samples_per_class": 300}
    args = ["updates", "submit", "--base", "1", "--dataset", str(story["dataset"]["id"]), "--seed", "3"]
    args += [arg for key, value in long.items() for arg in ("--recipe", f"{key}={value}")]
    watcher = subprocess.Popen(
        cli.command(*args, "--watch", "--interval", "0.5"),
        cwd=ROOT,
        env=cli.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        job = Stack.wait_until(
            lambda: next(
                (j for j in story["api"].ok(story["api"].http.get("/updates"))["items"] if j["status"] == "running"),
                None,
            ),
            timeout_s=120,
            what="the long job to run",
        )
        assert "cancellation requested" in cli("updates", "cancel", str(job["id"]))
        output, _ = watcher.communicate(timeout=180)
    finally:
        watcher.kill()
    assert watcher.returncode == 4, output
    assert f"job {job['id']} was cancelled; nothing was registered" in output


def test_models_commands(cli, story, tmp_path):
    listing = cli("models", "list", "--family", "fmnist")
    assert "accuracy" in listing and "NFR old" in listing and "rejected" in listing and "production" in listing
    assert "%*" in listing, "v1's accuracy is marked as measured as its successor's baseline"
    shown = cli("models", "show", "2")
    assert "rejected" in shown and "min_accuracy 0.99" in shown and "against model 1" in shown
    lineage = cli("models", "lineage", "2")
    assert "v2" in lineage and "v1" in lineage and "as the baseline of model" in lineage
    target = tmp_path / "v1.safetensors"
    downloaded = cli("models", "download", "1", "-o", str(target))
    sha256 = hashlib.sha256(target.read_bytes()).hexdigest()
    assert sha256 in downloaded and sha256 == story["api"].ok(story["api"].http.get("/models/1"))["sha256"]
    uploaded = cli("models", "upload", str(target), "--family", "imported-cli")
    assert "imported-cli v1 production (small_cnn, 5 classes)" in uploaded

    assert "not a candidate" in cli("models", "promote", "2", code=1)
    assert "--reason: a forced promotion needs a reason" in cli("models", "promote", "2", "--force", code=1)
    promoted = cli("models", "promote", "3")
    assert "model 3 (fmnist v3) is in production: gate passed" in promoted


def test_flips_commands(cli, story):
    first = cli("flips", "1", code=1)
    assert "--against: model 1 is a first version" in first and "?against" not in first
    report = cli("flips", "2")
    assert "model 2 against model 1" in report and "NFR, old classes" in report and "independent retrain" in report
    negative = cli("flips", "2", "--kind", "negative", "--class", "Coat", "--limit", "5")
    assert "matching flips" in negative and "positive" not in negative.split("#sample", 1)[1]
    ledger = list(csv.DictReader(io.StringIO(cli.stdout("flips", "2", "--csv", "--kind", "positive"))))
    assert ledger and {row["kind"] for row in ledger} == {"positive"}
    assert "--class: unknown class 'Hat'" in cli("flips", "2", "--class", "Hat", code=1)


def test_compare_any_two_versions(cli, story):
    # v2 and v3 are siblings (both from v1): no update job evaluated them against each other.
    computed = cli("compare", "2", "3", "--interval", "0.5")
    assert "computing model 2 against model 3" in computed and "model 2 against model 3" in computed
    assert "per class" in computed and "relative NFR" in computed
    again = cli("compare", "2", "3")
    assert "computing" not in again, "the second request reads the stored report"
    assert "model 2 against model 3" in cli("flips", "2", "--against", "3")
    # The other direction is another report: flips waits for it too.
    assert "model 3 against model 2" in cli("flips", "3", "--against", "2", "--interval", "0.5")
