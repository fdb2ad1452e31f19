"""What the browser is told: writes that ride on the dashboard cookie must come from the API's
own origin (bearer tokens are unaffected), pages never reflect the Host header into their URLs,
and every response carries the security headers."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from api_helpers import assert_error, model_file, ready_dataset, upload
from fastapi.testclient import TestClient

from api.deps import TOKEN_COOKIE
from api.main import create_app

OWN = {"Origin": "http://testserver"}
EVIL = {"Origin": "https://evil.example"}
TEMPLATES = Path(__file__).resolve().parents[2] / "api" / "dashboard" / "templates"


@pytest.fixture
def job(client, session, tmp_path) -> dict:
    base = upload(client, model_file(tmp_path / "v1.safetensors")).json()
    dataset = ready_dataset(session)
    response = client.post("/updates", json={"base_model_id": base["id"], "dataset_id": dataset.id})
    assert response.status_code == 202, response.text
    return response.json()


@pytest.fixture
def browser(app, make_token):
    """A client logged in through the dashboard's form: it holds only the cookie."""
    with TestClient(app) as browser:
        login = browser.post(
            "/dashboard/login",
            data={"token": make_token("read", "submit", "admin")},
            headers=OWN,
            follow_redirects=False,
        )
        assert login.status_code == 303 and TOKEN_COOKIE in browser.cookies
        yield browser


def test_cookie_writes_from_another_site_are_refused(browser, client, job):
    url = f"/updates/{job['id']}/cancel"
    for headers, named in (
        (EVIL, "Origin https://evil.example"),
        ({"Origin": "null"}, "Origin null"),
        ({"Referer": "https://evil.example/attack.html"}, "Referer https://evil.example"),
        ({"Origin": "http://testserver.evil.example"}, "is not http://testserver"),
        ({}, "must carry an Origin or Referer"),
    ):
        response = browser.post(url, headers=headers)
        assert_error(response, 403, ["header", "Origin"], named)
        assert response.json()["detail"][0]["type"] == "csrf"
    assert client.get(f"/updates/{job['id']}").json()["status"] == "queued"
    models = client.get("/models").json()
    assert_error(
        browser.post(f"/models/{job['base_model_id']}/promote", json={}, headers=EVIL), 403, ["header", "Origin"]
    )
    assert client.get("/models").json() == models
    # The dashboard's own scripts (same origin, by Origin or Referer) still work.
    assert browser.post(url, headers={"Referer": "http://testserver/dashboard/jobs/1"}).status_code == 200
    assert client.get(f"/updates/{job['id']}").json()["status"] == "cancelled"
    assert browser.get("/updates", headers=EVIL).status_code == 200  # reads change nothing


def test_bearer_tokens_are_not_subject_to_the_origin_check(client, job):
    response = client.post(f"/updates/{job['id']}/cancel", headers=EVIL)
    assert response.status_code == 200, response.text


def test_logging_in_or_out_from_another_site_is_refused(anonymous, make_token):
    token = make_token("read")
    refused = anonymous.post("/dashboard/login", data={"token": token}, headers=EVIL, follow_redirects=False)
    assert_error(refused, 403, ["header", "Origin"])
    assert TOKEN_COOKIE not in anonymous.cookies
    assert (
        anonymous.post("/dashboard/login", data={"token": token}, headers=OWN, follow_redirects=False).status_code
        == 303
    )
    assert_error(anonymous.post("/dashboard/logout", headers=EVIL), 403, ["header", "Origin"])
    assert anonymous.get("/dashboard", follow_redirects=False).status_code == 200


def test_a_configured_public_url_is_the_only_own_origin(settings, make_token, job):
    app = create_app(settings.model_copy(update={"public_url": "https://flipguard.example/"}))
    with TestClient(app) as browser:
        browser.cookies.set(TOKEN_COOKIE, make_token("read", "submit"))
        url = f"/updates/{job['id']}/cancel"
        assert_error(browser.post(url, headers=OWN), 403, ["header", "Origin"], "is not https://flipguard.example")
        assert browser.post(url, headers={"Origin": "https://flipguard.example"}).status_code == 200


def test_pages_do_not_reflect_the_host_header(anonymous, browser):
    for client, path in ((anonymous, "/dashboard/login"), (browser, "/dashboard")):
        page = client.get(path, headers={"Host": "evil.example"})
        assert page.status_code == 200
        assert "evil.example" not in page.text
        assert (
            'src="/dashboard/static/dashboard.js"' in page.text
            and 'href="/dashboard/static/dashboard.css"' in page.text
        )


def test_templates_hold_no_inline_script_or_style():
    for template in TEMPLATES.glob("*.html"):
        text = template.read_text()
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", text), template.name
        assert not re.search(r"\son[a-z]+\s*=", text), f"inline event handler in {template.name}"
        assert not re.search(r"\sstyle\s*=|<style", text), f"inline style in {template.name}"
        assert "url_for(" not in text, template.name


def test_dashboard_policy_allows_no_inline_code_or_style(browser):
    policy = browser.get("/dashboard").headers["content-security-policy"]
    assert "'unsafe-inline'" not in policy and "style-src 'self'" in policy


def assert_security_headers(response) -> None:
    headers = response.headers
    assert headers["x-frame-options"] == "DENY", response.url
    assert headers["x-content-type-options"] == "nosniff", response.url
    policy = headers["content-security-policy"]
    assert "frame-ancestors 'none'" in policy and "'unsafe-inline'" not in policy.split("script-src")[1].split(";")[0]


def test_every_response_carries_the_security_headers(app, anonymous, client, browser):
    @app.get("/boom")
    def boom():
        raise RuntimeError("unforeseen")

    with TestClient(app, raise_server_exceptions=False) as failing:
        crashed = failing.get("/boom")
    assert crashed.status_code == 500
    responses = [
        crashed,
        anonymous.get("/health"),
        anonymous.get("/models"),  # 401
        anonymous.get("/dashboard/login"),
        anonymous.get("/dashboard/static/dashboard.js"),
        anonymous.get("/dashboard/static/missing.js"),  # 404
        anonymous.get("/openapi.json"),
        client.get("/models/999"),  # 404 JSON
        client.post("/updates", content=b"{" * 10, headers={"Content-Type": "application/json"}),  # 422
        client.post("/updates", content=b" " * (4 * 1024 * 1024), headers={"Content-Type": "application/json"}),
        browser.get("/dashboard"),
        browser.post("/updates/1/cancel", headers=EVIL),  # 403
    ]
    for response in responses:
        assert_security_headers(response)


@pytest.mark.parametrize("path", ["/docs", "/redoc"])
def test_api_docs_run_only_their_nonced_script(anonymous, path):
    page = anonymous.get(path)
    assert page.status_code == 200
    policy = page.headers["content-security-policy"]
    nonce = re.search(r"'nonce-([^']+)'", policy).group(1)
    for tag in re.findall(r"<script[^>]*>", page.text):
        assert "src=" in tag or f'nonce="{nonce}"' in tag, tag
    assert page.headers["x-frame-options"] == "DENY"
