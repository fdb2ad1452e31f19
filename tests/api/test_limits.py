"""Bounded request bodies and lists, linear validation, and the API's JSON error body for every
malformed input (NaN and Infinity, deep nesting, a corrupt stored file), model files naming too
many classes: nothing stored changes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from api_helpers import assert_error, broker_messages, model_file, ready_dataset, upload
from fastapi.testclient import TestClient

from api.main import create_app
from contracts.limits import MAX_CLASS_NAME_CHARS, MAX_CLASSES
from db.updates import submission

LIMIT = 4096


@pytest.fixture
def small_bodies(settings, make_token):
    """A client of an app whose JSON bodies may be at most LIMIT bytes."""
    app = create_app(settings.model_copy(update={"max_json_body_bytes": LIMIT}))
    with TestClient(app) as client:
        client.headers["Authorization"] = f"Bearer {make_token('read', 'submit', 'admin', name='admin')}"
        yield client


@pytest.fixture
def base(client, tmp_path):
    return upload(client, model_file(tmp_path / "v1.safetensors")).json()


def update_body(base_id: int, dataset_id: int, **changes) -> dict:
    return {"base_model_id": base_id, "dataset_id": dataset_id, **changes}


def nothing_queued(client, settings) -> None:
    assert client.get("/updates").json()["total"] == 0
    assert [m for m in broker_messages(settings) if m["headers"]["task"] == "flipguard.run_update"] == []


def test_a_declared_body_over_the_limit_is_refused_before_it_is_read(small_bodies, settings):
    padding = "x" * LIMIT
    response = small_bodies.post("/updates", content=json.dumps({"family": padding}), headers=JSON_HEADERS)
    assert_error(response, 413, ["body"], "FLIPGUARD_MAX_JSON_BODY_BYTES")
    assert response.json()["detail"][0]["type"] == "too_large"
    nothing_queued(small_bodies, settings)


def test_a_streamed_body_is_counted_and_cut_off_at_the_limit(small_bodies, settings):
    sent = []

    def chunks():  # no Content-Length: Transfer-Encoding chunked
        for _ in range(64):
            sent.append(1024)
            yield b" " * 1024

    response = small_bodies.post("/datasets", content=chunks(), headers=JSON_HEADERS)
    assert "content-length" not in response.request.headers
    assert_error(response, 413, ["body"], f"larger than {LIMIT} bytes")
    nothing_queued(small_bodies, settings)
    assert small_bodies.get("/datasets").json()["total"] == 0


JSON_HEADERS = {"Content-Type": "application/json"}


def test_class_lists_are_capped_and_duplicates_named(client, settings, session, base):
    dataset = ready_dataset(session)
    too_many = [f"c{i}" for i in range(MAX_CLASSES + 1)]
    response = client.post("/updates", json=update_body(base["id"], dataset.id, classes=too_many))
    assert_error(response, 422, ["body", "classes"], f"at most {MAX_CLASSES} items")
    twice = ["sandal", "sneaker", "boot", "boot", "sandal"]
    response = client.post("/updates", json=update_body(base["id"], dataset.id, classes=twice))
    assert_error(response, 422, ["body", "classes"], "classes listed twice: ['boot', 'sandal']")
    long_name = ["x" * 201]
    assert_error(
        client.post("/updates", json=update_body(base["id"], dataset.id, classes=long_name)),
        422,
        ["body", "classes", 0],
    )
    nothing_queued(client, settings)


class CountingName(str):
    """A class name that counts how often it is compared for equality."""

    comparisons = 0

    def __eq__(self, other):
        CountingName.comparisons += 1
        return str.__eq__(self, other)

    __hash__ = str.__hash__


def test_class_checks_take_linear_time():
    """The submit check compares each name a bounded number of times (list.count in a loop
    compares every pair: 4 million comparisons for 2,000 names)."""
    names = [CountingName(f"class-{i}") for i in range(2000)]
    dataset_classes = [CountingName(name) for name in names]
    CountingName.comparisons = 0
    submission._check_classes(requested=names, dataset_classes=dataset_classes, base=None)
    assert CountingName.comparisons <= 4 * len(names)


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_non_finite_numbers_are_refused_as_json_errors(client, settings, session, base, literal):
    dataset = ready_dataset(session)
    raw = json.dumps(update_body(base["id"], dataset.id, gate={"max_nfr": 0.5})).replace("0.5", literal)
    response = client.post("/updates", content=raw, headers=JSON_HEADERS)
    assert_error(response, 422, ["body"], "invalid JSON")
    assert response.json()["detail"][0]["type"] == "json_invalid"
    nothing_queued(client, settings)


@pytest.mark.parametrize(
    "path, content_type",
    [
        ("/models", "application/json"),
        ("/models", "text/plain"),
        ("/updates", "application/json"),
        ("/datasets", "application/json"),
        ("/models/1/promote", "application/json"),
    ],
)
def test_deep_nesting_is_a_json_422_not_a_crash(client, settings, base, path, content_type):
    before = client.get("/models").json()
    deep = "[" * 50_000 + "]" * 50_000
    response = client.post(path, content=deep, headers={"Content-Type": content_type})
    assert_error(response, 422, ["body"], "nested deeper than")
    assert client.get("/models").json() == before
    nothing_queued(client, settings)


def test_a_multipart_body_without_a_boundary_is_a_json_4xx(client, settings):
    response = client.post("/models", content=b"[" * 50_000, headers={"Content-Type": "multipart/form-data"})
    assert 400 <= response.status_code < 500, response.text
    assert response.json()["detail"][0]["msg"]
    assert client.get("/models").json()["total"] == 0


def test_a_corrupt_report_image_file_is_a_json_error(client, settings, updated):
    _, model = updated
    images = Path(settings.artifact_path("reports/flips.npz"))
    original = images.read_bytes()
    for damaged in (original[: len(original) // 2], b"PK\x03\x04" + b"\0" * 200, b""):
        images.write_bytes(damaged)
        response = client.get(f"/models/{model.id}/flips/9/image")
        assert_error(response, 500, ["path", "sample_index"], "the report's image file is corrupt")
        assert response.json()["detail"][0]["type"] == "artifact_corrupt"
    images.write_bytes(original)
    assert client.get(f"/models/{model.id}/flips/9/image").status_code == 200


def test_an_unforeseen_error_is_the_json_error_body(app, make_token):
    @app.get("/boom")
    def boom():
        raise RuntimeError("unforeseen")

    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/boom")
    assert response.status_code == 500
    assert response.json() == {
        "detail": [{"loc": [], "msg": "internal error (RuntimeError)", "type": "internal_error"}]
    }


def test_start_up_removes_orphaned_partial_uploads_only(settings):
    import fcntl

    folder = settings.artifact_path("models")
    folder.mkdir(parents=True)
    (folder / "orphan.partial").write_bytes(b"half an upload")
    (folder / "kept.safetensors").write_bytes(b"a stored model")
    with open(folder / "live.partial", "wb") as live:
        fcntl.flock(live, fcntl.LOCK_EX)  # another process is writing this one
        create_app(settings)
        assert sorted(path.name for path in folder.iterdir()) == ["kept.safetensors", "live.partial"]


def test_a_model_files_class_list_is_capped(client, settings, tmp_path):
    # Checked from the header before the tensors (api/storage.py): the head here has three rows.
    too_many = [f"c{i}" for i in range(MAX_CLASSES + 1)]
    response = upload(client, model_file(tmp_path / "many.safetensors", classes=too_many, outputs=3))
    assert_error(response, 422, ["body", "file"], f"flipguard.classes may name at most {MAX_CLASSES} classes")
    long_name = ["sandal", "x" * (MAX_CLASS_NAME_CHARS + 1)]
    response = upload(client, model_file(tmp_path / "long.safetensors", classes=long_name))
    assert_error(response, 422, ["body", "file"], f"of at most {MAX_CLASS_NAME_CHARS} characters")
    assert client.get("/models").json()["total"] == 0
    assert not list((settings.artifact_root / "models").glob("*"))
