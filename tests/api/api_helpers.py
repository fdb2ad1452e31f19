"""Helpers of the API tests: model files, ready data sets, broker messages, error checks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

from contracts.architectures import expected_tensors
from contracts.flips import FlipSummary, LedgerRow
from contracts.jobs import Gate, JobRequest, RegisteredModel
from db.datasets.models import DatasetFormat
from db.datasets.service import create_dataset, mark_dataset_ready
from db.settings import Settings
from db.updates.completion import complete_job
from db.updates.lifecycle import claim_job
from db.updates.submission import create_job


def broker_messages(settings: Settings) -> list[dict]:
    """The Celery messages the API left in the filesystem broker folder."""
    folder = settings.broker_url.removeprefix("filesystem://")
    return [json.loads(path.read_text()) for path in sorted(Path(folder).glob("*.msg"))]


NUMPY_DTYPES = {"F32": np.float32, "I64": np.int64}


def model_file(path, *, classes=("sandal", "sneaker", "boot"), metadata=None, outputs=None, tensors=None) -> str:
    """A small safetensors model file in our artifact format, written with numpy: the full
    state dict of a one-channel small_cnn (contracts.architectures) whose classifier has
    `outputs` rows (default: one per class); `tensors` replaces (an array) or drops (None)
    tensors by name."""
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
    table = expected_tensors("small_cnn", num_classes=rows, in_channels=1)
    arrays = {name: np.ones(shape, dtype=NUMPY_DTYPES[dtype]) for name, (shape, dtype) in table.items()}
    for name, array in (tensors or {}).items():
        if array is None:
            arrays.pop(name)
        else:
            arrays[name] = array
    save_file(arrays, str(path), metadata=values)
    return str(path)


def ready_dataset(session, *, name="shoes", classes=("sandal", "sneaker", "boot", "slipper")):
    """A data set as the light worker leaves it after inspection."""
    dataset = create_dataset(session, name=name, uri="/data/shoes", format=DatasetFormat.NPZ)
    return mark_dataset_ready(
        session,
        dataset_id=dataset.id,
        classes=list(classes),
        train_size=80,
        test_size=20,
        image_shape=[1, 28, 28],
        digest="abc123",
    )


def upload(client, path, family="shoes"):
    with open(path, "rb") as handle:
        return client.post(
            "/models", data={"family": family}, files={"file": ("m.safetensors", handle, "application/octet-stream")}
        )


def assert_error(response, status: int, loc: list, contains: str = ""):
    """The response is an error of this status whose first detail names `loc`."""
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, list) and detail, detail
    assert detail[0]["loc"] == loc, detail
    assert contains in detail[0]["msg"], detail


CLASSES = ["sandal", "sneaker", "boot", "slipper"]


def scope(samples, negative, positive, old_correct, new_correct):
    nfr = negative / samples
    return {
        "samples": samples,
        "negative_flips": negative,
        "positive_flips": positive,
        "old_correct": old_correct,
        "new_correct": new_correct,
        "nfr": nfr,
        "pfr": positive / samples,
        "relative_nfr": nfr * 3,
        "old_accuracy": old_correct / samples,
        "new_accuracy": new_correct / samples,
    }


def summary(negative_old):
    """An mpt.flips.flip_report summary (hand-written: the API tests run without torch)."""
    figures = {
        "classes": CLASSES,
        "k_old": 3,
        "scopes": {"all": scope(40, negative_old, 2, 25, 30), "old_classes": scope(30, negative_old, 2, 25, 24)},
        "new_class_accuracy": 0.6,
        "new_class_samples": 10,
        "both_correct": 22,
        "both_wrong": 5,
        "btc": 0.88,
        "bec": 0.4,
        "intrusion_flips": 1,
        "per_class": [
            {
                "index": i,
                "name": name,
                "is_new": i >= 3,
                "samples": 10,
                "old_correct": 6,
                "new_correct": 7,
                "negative_flips": 1,
                "positive_flips": 1,
                "intrusion_flips": 0,
                "nfr": 0.1,
                "old_accuracy": 0.6,
                "new_accuracy": 0.7,
            }
            for i, name in enumerate(CLASSES)
        ],
        "transitions": [{"kind": "negative", "old_prediction": 0, "new_prediction": 3, "count": 1, "intrusion": True}],
    }
    return FlipSummary.from_dict(figures)


LEDGER: list[LedgerRow] = [
    {
        "sample_index": 4,
        "label": 0,
        "old_prediction": 0,
        "new_prediction": 3,
        "old_confidence": 0.9,
        "new_confidence": 0.1,
        "kind": "negative",
    },
    {
        "sample_index": 9,
        "label": 1,
        "old_prediction": 1,
        "new_prediction": 2,
        "old_confidence": 0.8,
        "new_confidence": 0.3,
        "kind": "negative",
    },
    {
        "sample_index": 12,
        "label": 2,
        "old_prediction": 1,
        "new_prediction": 2,
        "old_confidence": 0.2,
        "new_confidence": 0.7,
        "kind": "positive",
    },
    {
        "sample_index": 15,
        "label": 1,
        "old_prediction": 0,
        "new_prediction": 1,
        "old_confidence": 0.3,
        "new_confidence": 0.6,
        "kind": "positive",
    },
]


def seed_update(client, session, settings: Settings, tmp_path):
    """A base model (uploaded) and its update with a flip report, ledger and images, registered
    through the worker's db functions; returns (base model json, updated ModelVersion)."""
    base = upload(client, model_file(tmp_path / "v1.safetensors", classes=CLASSES[:3])).json()
    dataset = ready_dataset(session, classes=CLASSES)
    job, _ = create_job(
        session,
        request=JobRequest(
            base_model_id=base["id"],
            family=None,
            architecture=None,
            dataset_id=dataset.id,
            classes=None,
            method="mpt-kl",
            method_params={},
            recipe={},
            gate=Gate(max_nfr=0.5, auto_promote=False),
            seed=0,
        ),
    )
    claim_job(session, job_id=job.id, worker_id="w", heartbeat_timeout_s=60)
    images = settings.artifact_path("reports/flips.npz")  # uris are relative to the store
    images.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.arange(4 * 1 * 8 * 8, dtype=np.uint8).reshape(4, 1, 8, 8)
    np.savez(images, sample_index=np.array([row["sample_index"] for row in LEDGER]), images=pixels)
    model = complete_job(
        session,
        job_id=job.id,
        images_uri="reports/flips.npz",
        ledger=LEDGER,
        report=summary(2),
        reference_report=summary(5),
        model=RegisteredModel(
            artifact_uri="models/v2.safetensors",
            sha256="0" * 64,
            architecture="small_cnn",
            classes=tuple(CLASSES),
            recipe={},
            method="mpt-kl",
        ),
    )
    return base, model
