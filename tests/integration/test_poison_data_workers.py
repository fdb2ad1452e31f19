"""Poison data sets against real worker processes: a worker under a lowered address-space limit
(RLIMIT_AS) survives an npz declaring gigabytes and a decompression-bomb PNG, each data set ends
`failed` with the limit named; and a data set whose inspection kills every worker that reads it
is failed after a bounded number of deliveries instead of staying `pending` forever."""

from __future__ import annotations

import socket
import textwrap
from pathlib import Path

import numpy as np
import pytest

from scripts.stack import Stack, embedded_env
from tests.engine.poison_data import imagefolder_with, npz_declaring, png_of_zeros
from tests.integration.conftest import Api

# torch alone maps about 3.6 GB of address space; the data sets declare far more than the rest.
WORKER_ADDRESS_SPACE = 6 * 1024**3


def register(api: Api, name: str, uri: Path, data_format: str, timeout_s: float = 120) -> dict:
    dataset = api.ok(api.http.post("/datasets", json={"name": name, "uri": str(uri), "format": data_format}), 202)
    return Stack.wait_until(
        lambda: (row := api.ok(api.http.get(f"/datasets/{dataset['id']}")))["status"] != "pending" and row,
        timeout_s=timeout_s,
        what=f"data set {name} to leave pending",
    )


@pytest.fixture
def stack_home(tmp_path) -> tuple[dict, Path]:
    env = embedded_env(tmp_path) | {"FLIPGUARD_DEVICE": "cpu"}
    data = tmp_path / "data"  # a data root of embedded_env
    data.mkdir()
    return env, data


def test_a_worker_survives_poison_data_sets(stack_home, tmp_path):
    env, data = stack_home
    stack = Stack(env, log_dir=tmp_path / "logs")
    try:
        stack.migrate()
        stack.start_api()
        worker = stack.start_worker("limited", queues="light", address_space_bytes=WORKER_ADDRESS_SPACE)
        api = Api(stack)

        npz = register(api, "npz-bomb", npz_declaring(data / "bomb.npz", (16384, 1024, 1024)), "npz")
        assert npz["status"] == "failed", npz
        assert "x_train declares shape (16384, 1024, 1024)" in npz["error"]
        assert "FLIPGUARD_DATASET_MAX_BYTES" in npz["error"]

        bomb = png_of_zeros(tmp_path / "bomb.png", 20000, 20000)
        png = register(api, "png-bomb", imagefolder_with(data / "pngs", bomb), "imagefolder")
        assert png["status"] == "failed", png
        assert "bomb.png" in png["error"] and "FLIPGUARD_DATASET_MAX_IMAGE_PIXELS" in png["error"]

        assert worker.poll() is None, "the worker died"
        good = data / "good.npz"
        np.savez(
            good,
            x_train=np.zeros((4, 8, 8), np.uint8),
            y_train=np.array([0, 1, 0, 1]),
            x_test=np.zeros((2, 8, 8), np.uint8),
            y_test=np.array([0, 1]),
            classes=np.array(["a", "b"]),
        )
        ready = register(api, "good", good, "npz")
        assert ready["status"] == "ready" and ready["train_size"] == 4, ready
        assert worker.poll() is None

        # /health names the live worker and its queue, and is 503 until one serves training.
        health = api.http.get("/health")
        assert health.status_code == 503, health.text
        (light,) = health.json()["workers"]
        assert light["name"] == f"limited@{socket.gethostname()}" and light["queues"] == ["light"] and light["live"]
        trainer = stack.start_worker("trainer", queues="training")
        Stack.wait_until(lambda: api.http.get("/health").status_code == 200, timeout_s=120, what="a training worker")
        stack.stop_process(trainer)  # a clean shutdown removes its heartbeat row
        health = api.http.get("/health")
        assert health.status_code == 503 and [w["name"] for w in health.json()["workers"]] == [light["name"]]
    finally:
        stack.stop()


# Loaded by every Python process of a "poisoned" worker (PYTHONPATH): reading a data set kills
# the process outright, as the kernel's OOM killer would.
KILLING_SITECUSTOMIZE = textwrap.dedent(
    """
    import os, signal
    from celery.signals import worker_ready

    @worker_ready.connect(weak=False)
    def _poison(**_):
        import worker.inspection

        def die(*args, **kwargs):
            os.kill(os.getpid(), signal.SIGKILL)

        worker.inspection.open_dataset = die
    """
)


def test_a_data_set_that_kills_its_workers_is_failed_after_bounded_deliveries(stack_home, tmp_path):
    env, data = stack_home
    env |= {
        "FLIPGUARD_INSPECT_TIMEOUT_S": "3",
        "FLIPGUARD_RECONCILE_INTERVAL_S": "1",
        "FLIPGUARD_MAX_INSPECT_DELIVERIES": "2",
    }
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(KILLING_SITECUSTOMIZE)
    poisoned = {"PYTHONPATH": str(hooks)}
    stack = Stack(env, log_dir=tmp_path / "logs")
    try:
        stack.migrate()
        stack.start_api()
        api = Api(stack)
        first = stack.start_worker("poisoned-1", queues="light", extra_env=poisoned)
        (data / "set").mkdir()
        dataset = api.ok(
            api.http.post("/datasets", json={"name": "killer", "uri": str(data / "set"), "format": "imagefolder"}), 202
        )
        Stack.wait_until(lambda: first.poll() is not None, timeout_s=120, what="the first worker to die")
        # The next worker's reconciler finds the data set held by a dead delivery and sends it again.
        second = stack.start_worker("poisoned-2", queues="light", extra_env=poisoned)
        Stack.wait_until(lambda: second.poll() is not None, timeout_s=120, what="the second worker to die")
        row = api.ok(api.http.get(f"/datasets/{dataset['id']}"))
        assert (row["status"], row["inspect_attempts"]) == ("pending", 2), row
        # A healthy worker counts a third delivery, past the bound: failed without reading.
        healthy = stack.start_worker("healthy", queues="light")
        row = Stack.wait_until(
            lambda: (row := api.ok(api.http.get(f"/datasets/{dataset['id']}")))["status"] != "pending" and row,
            timeout_s=120,
            what="the data set to be failed",
        )
        assert row["status"] == "failed" and row["inspect_attempts"] == 3, row
        assert "did not finish in 2 deliveries" in row["error"] and "FLIPGUARD_MAX_INSPECT_DELIVERIES" in row["error"]
        assert healthy.poll() is None
    finally:
        stack.stop()
