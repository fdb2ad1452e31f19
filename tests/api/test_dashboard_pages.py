"""The dashboard's pages rendered by the app in process (tests/browser drives them in Chromium
against a real stack): figures and their formats, the promotion's confirmation, the data set
pages, the update form's field errors and the compare view."""

from __future__ import annotations

import html
import re

from api_helpers import CLASSES, broker_messages, model_file, upload
from fastapi.testclient import TestClient

from api.deps import TOKEN_COOKIE
from db.tokens.service import authenticate


def text(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def test_model_pages_show_figures_in_one_format(client, updated):
    base, v2 = updated
    page = client.get(f"/dashboard/models/{v2.id}")
    assert page.status_code == 200
    body = text(page.text)
    # Relative NFR is a ratio with three decimals everywhere (summary(2): nfr 2/30, times 3).
    assert "0.200" in body and "20.00%" not in body
    # Every lineage point names its class count.
    assert "v1 (3 cl.)" in page.text and "v2 (4 cl.)" in page.text
    first = text(client.get(f"/dashboard/models/{base['id']}").text)
    # The uploaded v1 shows the accuracy v2's report measured for it, and says so.
    assert "83.33%" in first and "as the baseline of model" in first


def test_split_transition_matrices(client, updated):
    _, v2 = updated
    html = client.get(f"/dashboard/models/{v2.id}/flips").text
    assert 'id="matrix-negative"' in html and 'id="matrix-positive"' in html
    assert "1 negative flip" in html and " flips (darker" not in html


def test_promotion_needs_a_confirmation(client, updated):
    base, v2 = updated
    confirm = client.get(f"/dashboard/models/{v2.id}/promote", params={"force": "true", "reason": "hotfix"})
    assert confirm.status_code == 200
    assert "is <b>archived</b>" in confirm.text and "Confirm: promote v2" in confirm.text
    assert client.get(f"/models/{v2.id}").json()["status"] == "candidate", "opening the page changes nothing"
    missing = client.post(f"/dashboard/models/{v2.id}/promote", data={"force": "true", "reason": ""})
    assert missing.status_code == 422 and 'id="reason-error"' in missing.text
    done = client.post(
        f"/dashboard/models/{v2.id}/promote", data={"force": "true", "reason": "hotfix"}, follow_redirects=False
    )
    assert done.status_code == 303 and done.headers["location"] == f"/dashboard/models/{v2.id}"
    promoted = client.get(f"/models/{v2.id}").json()
    assert promoted["status"] == "production" and promoted["promotion_reason"] == "hotfix"
    assert client.get(f"/models/{base['id']}").json()["status"] == "archived"


def test_the_dashboard_promotion_records_the_logged_in_token(app, client, make_token, session, updated) -> None:
    _, v2 = updated
    token = make_token("read", "admin", name="release-bot")
    bot = authenticate(session, token=token)
    assert bot is not None
    with TestClient(app) as browser:  # holds only the cookie the login form sets
        own = {"Origin": "http://testserver"}
        login = browser.post("/dashboard/login", data={"token": token}, headers=own, follow_redirects=False)
        assert login.status_code == 303 and TOKEN_COOKIE in browser.cookies
        done = browser.post(
            f"/dashboard/models/{v2.id}/promote", data={"reason": "hotfix"}, headers=own, follow_redirects=False
        )
        assert done.status_code == 303, done.text
        page = browser.get(f"/dashboard/models/{v2.id}").text
    assert client.get(f"/models/{v2.id}").json()["promoted_by"] == f"token {bot.id} 'release-bot'"
    shown = re.search(r'<span id="promoted-by">([^<]*)</span>', page)
    assert shown is not None and html.unescape(shown.group(1)) == f"token {bot.id} 'release-bot'"
    assert f"by token {bot.id} 'release-bot'" in html.unescape(text(page))


def test_dataset_pages(client, session):
    from api_helpers import ready_dataset

    from db.datasets.service import create_dataset, mark_dataset_failed

    ready = ready_dataset(session)
    broken = create_dataset(session, name="broken", uri="/data/broken", format="npz")
    mark_dataset_failed(session, dataset_id=broken.id, error="labels must lie in 0..3")
    listing = client.get("/dashboard/datasets").text
    assert "shoes" in listing and "broken" in listing and "labels must lie in 0..3" in listing
    page = text(client.get(f"/dashboard/datasets/{ready.id}").text)
    assert all(name in page for name in CLASSES) and "no stored image" in page
    assert "labels must lie in 0..3" in client.get(f"/dashboard/datasets/{broken.id}").text


def test_update_form_shows_errors_next_to_fields(client, updated, settings):
    base, _ = updated
    assert client.get("/dashboard/updates/new").status_code == 200
    refused = client.post(
        "/dashboard/updates/new",
        data={"base_model_id": str(base["id"]), "dataset_id": "1", "method": "mpt-kl", "recipe.epochs": "0",
              "classes": "sandal, unicorn"},
    )  # fmt: skip
    assert refused.status_code == 422
    assert 'id="error-recipe-epochs"' in refused.text
    unknown = client.post(
        "/dashboard/updates/new",
        data={"base_model_id": str(base["id"]), "dataset_id": "1", "method": "mpt-kl", "classes": "sandal, unicorn"},
    )
    assert unknown.status_code == 422 and 'id="error-classes"' in unknown.text and "unicorn" in unknown.text
    not_a_number = client.post(
        "/dashboard/updates/new",
        data={"base_model_id": str(base["id"]), "dataset_id": "1", "recipe.lr": "fast", "gate.max_nfr": "0.x"},
    )
    assert not_a_number.status_code == 422
    assert 'id="error-recipe-lr"' in not_a_number.text and 'id="error-gate-max_nfr"' in not_a_number.text
    before = len(broker_messages(settings))
    done = client.post(
        "/dashboard/updates/new",
        data={"base_model_id": str(base["id"]), "dataset_id": "1", "method": "mpt-kl", "recipe.epochs": "1",
              "classes": "sandal, sneaker, boot"},
        follow_redirects=False,
    )  # fmt: skip
    assert done.status_code == 303 and done.headers["location"].startswith("/dashboard/jobs/")
    job = client.get("/updates/" + done.headers["location"].rsplit("/", 1)[1]).json()
    assert job["classes"] == ["sandal", "sneaker", "boot"] and job["recipe"] == {"epochs": 1}
    assert len(broker_messages(settings)) == before + 1


def test_compare_view(client, updated, tmp_path):
    base, v2 = updated
    assert client.get("/dashboard/compare").status_code == 200
    stored = client.get("/dashboard/compare", params={"model": v2.id, "against": base["id"]}, follow_redirects=False)
    assert stored.status_code == 303 and stored.headers["location"].endswith(f"/flips?against={base['id']}")
    v3 = upload(client, model_file(tmp_path / "v3.safetensors", classes=CLASSES[:3])).json()
    pending = client.get("/dashboard/compare", params={"model": v3["id"], "against": v2.id})
    assert pending.status_code == 200 and 'http-equiv="refresh"' in pending.text
    assert 'id="comparison-progress"' in pending.text
    # The flips page of a pair without a report sends the browser to the compare view.
    redirect = client.get(f"/dashboard/models/{v2.id}/flips", params={"against": v3["id"]}, follow_redirects=False)
    assert redirect.status_code == 303 and redirect.headers["location"].startswith("/dashboard/compare?")
    same = client.get("/dashboard/compare", params={"model": v2.id, "against": v2.id})
    assert same.status_code == 422 and "itself" in same.text
