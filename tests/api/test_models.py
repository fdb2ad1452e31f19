import re
from pathlib import Path

from api_helpers import assert_error, model_file, upload
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from api.main import create_app
from db.tokens.service import authenticate


def test_upload_registers_versions_and_serves_checked_weights(client, tmp_path):
    first = upload(client, model_file(tmp_path / "v1.safetensors"))
    assert first.status_code == 201, first.text
    v1 = first.json()
    assert (v1["version"], v1["status"], v1["architecture"]) == (1, "production", "small_cnn")
    assert v1["classes"] == ["sandal", "sneaker", "boot"]
    v2 = upload(client, model_file(tmp_path / "v2.safetensors", classes=("a", "b"))).json()
    assert (v2["version"], v2["status"], v2["parent_id"]) == (2, "candidate", v1["id"])

    weights = client.get(f"/models/{v1['id']}/weights")
    assert weights.status_code == 200
    assert weights.content == Path(tmp_path / "v1.safetensors").read_bytes()
    assert weights.headers["x-checksum-sha256"] == v1["sha256"]

    lineage = client.get(f"/models/{v2['id']}/lineage").json()
    assert [entry["version"] for entry in lineage] == [2, 1]
    assert client.get("/models", params={"family": "shoes", "status": "candidate"}).json()["total"] == 1


def test_corrupted_weights_are_not_served(client, tmp_path, settings):
    model = upload(client, model_file(tmp_path / "v1.safetensors")).json()
    stored = next(Path(settings.artifact_root, "models").glob("*.safetensors"))
    stored.write_bytes(stored.read_bytes()[:-1] + b"\x01")
    assert_error(client.get(f"/models/{model['id']}/weights"), 500, ["path", "model_id"], "sha256")


def test_invalid_model_files_are_refused_by_field(client, tmp_path, settings):
    dupes = model_file(tmp_path / "d.safetensors", classes=("boot", "boot", "sandal"))
    assert_error(upload(client, dupes), 422, ["body", "file"], "boot")
    no_meta = model_file(tmp_path / "n.safetensors", metadata={"flipguard.arch": None})
    assert_error(upload(client, no_meta), 422, ["body", "file"], "flipguard.arch")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a safetensors file at all")
    assert_error(upload(client, junk), 422, ["body", "file"], "safetensors")
    big = tmp_path / "big.safetensors"
    big.write_bytes(b"\0" * (settings.max_upload_bytes + 10))
    assert_error(upload(client, big), 413, ["body", "file"])
    assert_error(
        client.post("/models", data={"family": "bad family!"}, files={"file": ("m", b"x")}), 422, ["body", "family"]
    )
    assert_error(client.post("/models", data={"family": "f"}), 422, ["body", "file"])
    # Nothing invalid was left in the artifact store.
    assert list(Path(settings.artifact_root, "models").glob("*")) == []


def test_register_by_uri_inside_data_roots(client, tmp_path):
    inside = model_file(tmp_path / "data" / "m.safetensors")
    response = client.post("/models", json={"family": "shoes", "uri": inside})
    assert response.status_code == 201, response.text
    outside = model_file(tmp_path / "m.safetensors")
    assert_error(client.post("/models", json={"family": "shoes", "uri": outside}), 422, ["body", "uri"])
    assert_error(client.post("/models", json={"family": "shoes"}), 422, ["body", "uri"])
    assert_error(client.post("/models", json={"family": "shoes", "uri": inside, "x": 1}), 422, ["body", "x"])


def test_promotion_rules(client, tmp_path):
    v1 = upload(client, model_file(tmp_path / "v1.safetensors")).json()
    v2 = upload(client, model_file(tmp_path / "v2.safetensors")).json()
    promoted = client.post(f"/models/{v2['id']}/promote", json={})
    assert promoted.status_code == 200 and promoted.json()["status"] == "production"
    assert client.get(f"/models/{v1['id']}").json()["status"] == "archived"
    assert_error(client.post(f"/models/{v1['id']}/promote", json={}), 409, ["path", "model_id"])
    assert_error(client.post(f"/models/{v1['id']}/promote", json={"force": True}), 422, ["body", "reason"])
    rollback = client.post(f"/models/{v1['id']}/promote", json={"force": True, "reason": "rollback"})
    assert rollback.json()["forced"] is True and rollback.json()["promotion_reason"] == "rollback"
    assert_error(client.post("/models/999/promote", json={}), 404, ["path", "model_id"])
    assert_error(client.get("/models/abc"), 422, ["path", "model_id"])


def bearer_of(session: Session, token: str) -> tuple[dict[str, str], int]:
    """The Authorization header of a token and its id."""
    row = authenticate(session, token=token)
    assert row is not None
    return {"Authorization": f"Bearer {token}"}, row.id


def test_a_promotion_names_the_token_that_promoted(client, anonymous, make_token, session, tmp_path) -> None:
    v1 = upload(client, model_file(tmp_path / "v1.safetensors")).json()
    v2 = upload(client, model_file(tmp_path / "v2.safetensors")).json()
    assert (v1["promoted_by"], v2["promoted_by"]) == ("flipguard (automatic)", None)

    release_bot, bot_id = bearer_of(session, make_token("read", "admin", name="release-bot"))
    promoted = anonymous.post(f"/models/{v2['id']}/promote", json={}, headers=release_bot)
    assert promoted.status_code == 200, promoted.text
    assert promoted.json()["promoted_by"] == f"token {bot_id} 'release-bot'"
    shown = anonymous.get(f"/models/{v2['id']}", headers=release_bot).json()
    assert shown["promoted_by"] == f"token {bot_id} 'release-bot'"

    # A forced rollback names whoever rolled back; the archived version keeps its record.
    on_call, on_call_id = bearer_of(session, make_token("read", "admin", name="on-call"))
    forced = {"force": True, "reason": "v2 broke"}
    rollback = anonymous.post(f"/models/{v1['id']}/promote", json=forced, headers=on_call)
    assert rollback.json()["promoted_by"] == f"token {on_call_id} 'on-call'"
    listed = {model["id"]: model for model in anonymous.get("/models", headers=on_call).json()["items"]}
    assert listed[v2["id"]]["status"] == "archived" and listed[v2["id"]]["promoted_by"] == shown["promoted_by"]


def test_with_authentication_off_a_promotion_is_anonymous(settings, tmp_path) -> None:
    with TestClient(create_app(settings.model_copy(update={"auth_enabled": False}))) as client:
        upload(client, model_file(tmp_path / "v1.safetensors"))
        v2 = upload(client, model_file(tmp_path / "v2.safetensors")).json()
        promoted = client.post(f"/models/{v2['id']}/promote", json={})
        assert promoted.json()["promoted_by"] == "anonymous (authentication off)"
        assert client.get(f"/models/{v2['id']}").json()["promoted_by"] == "anonymous (authentication off)"


def test_the_cli_names_who_promoted(app, make_token, session, tmp_path, monkeypatch) -> None:
    """`models promote` and `models show` in process; the brackets of the name are not rich markup."""
    from typer.testing import CliRunner

    from api.cli import client as cli_client
    from api.cli.app import app as cli_app

    headers, token_id = bearer_of(session, make_token("read", "submit", "admin", name="ops[release]"))
    with TestClient(app, headers=headers) as http:
        upload(http, model_file(tmp_path / "v1.safetensors"))
        v2 = upload(http, model_file(tmp_path / "v2.safetensors")).json()
        monkeypatch.setattr(cli_client, "make_client", lambda url, token: http)
        runner = CliRunner()
        promoted = runner.invoke(cli_app, ["models", "promote", str(v2["id"])])
        assert promoted.exit_code == 0, promoted.output
        who = f"token {token_id} 'ops[release]'"
        assert f"is in production: uploaded model promoted (promoted by {who})" in promoted.output
        shown = runner.invoke(cli_app, ["models", "show", str(v2["id"])])
        assert shown.exit_code == 0, shown.output
        assert re.search(rf"promoted by +{re.escape(who)}", shown.output), shown.output
