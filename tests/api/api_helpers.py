"""Helpers of the API tests: model files, ready data sets, broker messages, error checks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

from db.datasets.models import DatasetFormat
from db.datasets.service import create_dataset, mark_dataset_ready
from db.settings import Settings


def broker_messages(settings: Settings) -> list[dict]:
    """The Celery messages the API left in the filesystem broker folder."""
    folder = settings.broker_url.removeprefix("filesystem://")
    return [json.loads(path.read_text()) for path in sorted(Path(folder).glob("*.msg"))]


def model_file(path, *, classes=("sandal", "sneaker", "boot"), metadata=None, outputs=None) -> str:
    """A small safetensors model file in our artifact format, written with numpy: its
    classifier `fc.weight` has `outputs` rows (default: one per class)."""
    values = {
        "flipguard.arch": "small_cnn",
        "flipguard.classes": json.dumps(list(classes)),
        "flipguard.in_channels": "1",
        "flipguard.image_size": "[28, 28]",
        "flipguard.mean": "[0.5]",
        "flipguard.std": "[0.25]",
    }
    values.update(metadata or {})
    values = {key: value for key, value in values.items() if value is not None}
    rows = len(classes) if outputs is None else outputs
    save_file({"fc.weight": np.ones((rows, 8), dtype=np.float32)}, str(path), metadata=values)
    return str(path)


def ready_dataset(session, *, name="shoes", classes=("sandal", "sneaker", "boot", "slipper")):
    """A data set as the light worker leaves it after inspection."""
    dataset = create_dataset(session, name=name, uri="/data/shoes", format=DatasetFormat.NPZ)
    return mark_dataset_ready(session, dataset_id=dataset.id, classes=list(classes), train_size=80,
                              test_size=20, image_shape=[1, 28, 28], digest="abc123")


def upload(client, path, family="shoes"):
    with open(path, "rb") as handle:
        return client.post("/models", data={"family": family},
                           files={"file": ("m.safetensors", handle, "application/octet-stream")})


def assert_error(response, status: int, loc: list, contains: str = ""):
    """The response is an error of this status whose first detail names `loc`."""
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, list) and detail, detail
    assert detail[0]["loc"] == loc, detail
    assert contains in detail[0]["msg"], detail
