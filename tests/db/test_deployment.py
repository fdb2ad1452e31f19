"""The production compose file and Dockerfile say what docs/ARCHITECTURE.md asks of a deployment."""

from __future__ import annotations

import json
import re
import subprocess
import tomllib
from pathlib import Path

import yaml

from contracts.tasks import LIGHT_QUEUE, TRAINING_QUEUE

ROOT = Path(__file__).resolve().parents[2]


def _compose() -> dict:
    checked = subprocess.run(["docker-compose", "config"], cwd=ROOT, capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    return yaml.safe_load(checked.stdout)


def test_compose_file_is_accepted_and_complete():
    services = _compose()["services"]
    assert {"postgres", "redis", "migrate", "api", "worker-gpu0", "worker-light"} <= set(services)
    assert "--appendonly" in services["redis"]["command"] and "yes" in services["redis"]["command"]
    assert services["migrate"]["command"] == ["alembic", "upgrade", "head"]
    assert services["api"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"


def test_gpu_worker_is_one_solo_process_pinned_to_its_gpu():
    worker = _compose()["services"]["worker-gpu0"]
    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and devices[0]["device_ids"] == ["0"]
    assert worker["environment"]["CUDA_VISIBLE_DEVICES"] == "0"
    assert "--pool=solo" in worker["command"] and "--concurrency=1" in worker["command"]
    assert worker["command"][worker["command"].index("-Q") + 1] == TRAINING_QUEUE


def test_workers_consume_the_contract_queues():
    # Compose and the Dockerfile cannot import contracts.tasks: they keep copies of its names.
    light = _compose()["services"]["worker-light"]["command"]
    assert light[light.index("-Q") + 1] == LIGHT_QUEUE
    worker_cmd = json.loads((ROOT / "Dockerfile").read_text().rsplit("\nCMD ", 1)[1].splitlines()[0])
    assert worker_cmd[worker_cmd.index("-Q") + 1] == TRAINING_QUEUE


def test_both_images_carry_the_contracts():
    base_stage = (ROOT / "Dockerfile").read_text().split(" AS base", 1)[1].split("FROM ", 1)[0]
    assert "COPY contracts ./contracts" in base_stage


def test_api_image_carries_no_torch():
    dockerfile = (ROOT / "Dockerfile").read_text()
    api_stage = dockerfile.split("AS api", 1)[1].split("FROM ", 1)[0]
    extras = re.findall(r'pip install "\.\[([^\]]+)\]"', api_stage)
    assert extras == ["service"]
    service_deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["service"]
    assert not any(dep.startswith(("torch", "torchvision")) for dep in service_deps)
