"""Browser fixtures: a real embedded stack (API + Celery worker processes) with a real small
Fashion-MNIST update, and a headless Chromium driven through chromedriver."""

from __future__ import annotations

from pathlib import Path

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from scripts.stack import ROOT, embedded_env, running_stack
from tests.browser.browser import start_chromium, stop_chromium
from tests.integration.conftest import SMALL_RECIPE, Api

SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"
OLD = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat"]
# Two epochs, so that every per-epoch curve has a line and not a lone point.
RECIPE = SMALL_RECIPE | {"epochs": 2}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    home = tmp_path_factory.mktemp("browser-stack")
    # A short heartbeat: the worker reads cancellation (and writes progress) every 2 s.
    # Auth stays on: the driver logs in with the stack's admin token (the dashboard's cookie).
    env = embedded_env(home) | {"FLIPGUARD_DEVICE": "cpu", "FLIPGUARD_HEARTBEAT_TIMEOUT_S": "8"}
    with running_stack(env, log_dir=home / "logs") as running:
        yield running


@pytest.fixture(scope="module")
def story(stack) -> dict:
    """v1 (classes 0-4, in production), v2 by mpt-kl on all ten classes whose gate rejects it
    (no b given: the service's default sweep of b in {0, 1, 2, 4} chose it), and a job that
    failed (its base weights were corrupted on disk)."""
    api = Api(stack)
    dataset = api.register_dataset(name="fmnist-browser")
    assert dataset["status"] == "ready", dataset
    first = api.wait_job(
        api.submit(
            {
                "family": "fmnist",
                "architecture": "small_cnn",
                "dataset_id": dataset["id"],
                "classes": OLD,
                "method": "independent",
                "recipe": RECIPE,
                "gate": {"auto_promote": True},
                "seed": 0,
            }
        )["id"]
    )
    assert first["status"] == "succeeded", first
    v1 = api.ok(api.http.get(f"/models/{first['result_model_id']}"))
    assert v1["status"] == "production", v1
    update = api.wait_job(
        api.submit(
            {
                "base_model_id": v1["id"],
                "dataset_id": dataset["id"],
                "method": "mpt-kl",
                "recipe": RECIPE,
                "gate": {"min_accuracy": 0.99},
                "seed": 0,
            }
        )["id"]
    )
    assert update["status"] == "succeeded", update
    v2 = api.ok(api.http.get(f"/models/{update['result_model_id']}"))
    assert v2["status"] == "rejected", v2

    weights = Path(stack.env["FLIPGUARD_ARTIFACT_ROOT"]) / v1["artifact_uri"]
    original = weights.read_bytes()
    weights.write_bytes(original[:-100] + b"\0" * 100)
    try:
        failed = api.wait_job(
            api.submit(
                {
                    "base_model_id": v1["id"],
                    "dataset_id": dataset["id"],
                    "method": "mpt-kl",
                    "method_params": {"bias": 4.0},
                    "recipe": RECIPE,
                    "seed": 1,
                }
            )["id"],
            timeout_s=120,
        )
    finally:
        weights.write_bytes(original)
    assert failed["status"] == "failed", failed
    return {
        "api": api,
        "dataset": dataset,
        "v1": v1,
        "v2": v2,
        "first_job": first,
        "update_job": update,
        "failed_job": failed,
    }


@pytest.fixture(scope="module")
def driver(stack):
    """A browser logged in to the dashboard with the stack's token (the login form's cookie)."""
    driver, profile = start_chromium(width=1366, height=768)
    try:
        driver.get(f"{stack.url}/dashboard/login")
        driver.find_element(By.ID, "login-token").send_keys(stack.token)
        driver.find_element(By.ID, "login-form").submit()
        WebDriverWait(driver, 30).until(lambda d: d.current_url.rstrip("/").endswith("/dashboard"))
        yield driver
    finally:
        stop_chromium(driver, profile)
