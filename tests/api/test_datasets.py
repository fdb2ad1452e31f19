import os

from api_helpers import assert_error, broker_messages

from contracts.tasks import INSPECT_DATASET_TASK


def test_register_dataset_enqueues_inspection(client, settings, tmp_path):
    folder = tmp_path / "data" / "fmnist"
    folder.mkdir()
    response = client.post("/datasets", json={"name": "fmnist", "uri": str(folder), "format": "fashion-mnist"})
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["status"] == "pending" and body["classes"] is None
    messages = broker_messages(settings)
    assert len(messages) == 1
    assert messages[0]["headers"]["task"] == INSPECT_DATASET_TASK
    assert client.get(f"/datasets/{body['id']}").json()["name"] == "fmnist"
    assert client.get("/datasets").json()["total"] == 1
    duplicate = client.post("/datasets", json={"name": "fmnist", "uri": str(folder), "format": "imagefolder"})
    assert_error(duplicate, 409, ["body", "name"])


def test_uri_kind_must_fit_the_format(client, settings, tmp_path):
    folder = tmp_path / "data" / "images"
    folder.mkdir()
    archive = tmp_path / "data" / "set.npz"
    archive.write_bytes(b"PK")
    assert_error(
        client.post("/datasets", json={"name": "a", "uri": str(folder), "format": "npz"}),
        422,
        ["body", "uri"],
        "format npz needs a .npz file",
    )
    for data_format in ("imagefolder", "fashion-mnist", "cifar"):
        assert_error(
            client.post("/datasets", json={"name": "b", "uri": str(archive), "format": data_format}),
            422,
            ["body", "uri"],
            "use format npz",
        )
    assert broker_messages(settings) == [], "nothing refused reaches the worker"
    assert client.post("/datasets", json={"name": "c", "uri": str(archive), "format": "npz"}).status_code == 202


def test_uri_must_stay_inside_data_roots(client, tmp_path):
    outside = tmp_path / "secret"
    outside.mkdir()
    escape = str(tmp_path / "data" / ".." / "secret")
    assert_error(
        client.post("/datasets", json={"name": "a", "uri": escape, "format": "npz"}),
        422,
        ["body", "uri"],
        "add it to the server's FLIPGUARD_DATA_ROOTS setting",
    )
    os.symlink(outside, tmp_path / "data" / "link")
    assert_error(
        client.post("/datasets", json={"name": "b", "uri": str(tmp_path / "data" / "link"), "format": "npz"}),
        422,
        ["body", "uri"],
    )
    assert_error(
        client.post("/datasets", json={"name": "c", "uri": str(tmp_path / "data" / "nope"), "format": "npz"}),
        422,
        ["body", "uri"],
        "does not exist",
    )
    assert_error(client.post("/datasets", json={"name": "d", "uri": "/x", "format": "jpeg"}), 422, ["body", "format"])
    assert_error(client.get("/datasets/99"), 404, ["path", "dataset_id"])
