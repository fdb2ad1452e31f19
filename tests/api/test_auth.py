"""Bearer tokens with scopes on every route, the dashboard's cookie login, the admin command."""

from __future__ import annotations

import re

import pytest
from api_helpers import assert_error
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from api import tokens
from api.dashboard import views as dashboard
from api.deps import TOKEN_COOKIE
from api.main import create_app
from db.tokens.models import ApiToken

OPEN_ROUTES = {
    ("GET", "/health"),
    ("GET", "/dashboard/login"),
    ("POST", "/dashboard/login"),
    ("POST", "/dashboard/logout"),
}
SCOPES = ("read", "submit", "admin")


def required_scope(method: str, path: str) -> str:
    """The scope each route documents: reads need read, writes submit, promotion admin."""
    if path.endswith("/promote"):
        return "admin"
    return "read" if method == "GET" else "submit"


def concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "1", path)


def every_route(app) -> list[tuple[str, str]]:
    """Every (method, path) of the OpenAPI schema, plus the dashboard's pages (not in the schema)."""
    routes = {(method.upper(), path) for path, item in app.openapi()["paths"].items() for method in item}
    routes |= {
        (method, route.path)
        for router in (dashboard.router, dashboard.login_router)
        for route in router.routes
        if isinstance(route, APIRoute)
        for method in route.methods
    }
    return sorted(routes)


def test_every_route_needs_a_token_with_its_scope(app, anonymous, make_token):
    routes = every_route(app)
    assert ("POST", "/models/{model_id}/promote") in routes and ("GET", "/dashboard") in routes
    tokens_without = {scope: make_token(*[s for s in SCOPES if s != scope], name=f"no-{scope}") for scope in SCOPES}
    for method, path in routes:
        if (method, path) in OPEN_ROUTES:
            continue
        url = concrete(path)
        page = path.startswith("/dashboard") and method == "GET"
        for headers in ({}, {"Authorization": "Bearer not-a-token"}, {"Authorization": "Basic eDp5"}):
            response = anonymous.request(method, url, headers=headers, follow_redirects=False)
            if page:  # a page sends the browser to the login form instead
                assert response.status_code == 303, (method, path, response.text)
                assert response.headers["location"].startswith("/dashboard/login"), (method, path)
                continue
            assert_error(response, 401, ["header", "Authorization"])
            assert response.headers["www-authenticate"] == "Bearer", (method, path)
        scope = required_scope(method, path)
        lacking = anonymous.request(method, url, headers={"Authorization": f"Bearer {tokens_without[scope]}"})
        assert_error(lacking, 403, ["header", "Authorization"], scope)


def test_open_routes_and_a_token_with_the_scope(anonymous, make_token):
    health = anonymous.get("/health")  # 503 here: no worker serves the training queue
    assert health.status_code in (200, 503) and health.json()["database"] == "ok"
    reader = {"Authorization": f"Bearer {make_token('read')}"}
    assert anonymous.get("/models", headers=reader).status_code == 200
    assert anonymous.get("/metrics", headers=reader).status_code == 200
    assert_error(anonymous.post("/updates/1/cancel", headers=reader), 403, ["header", "Authorization"])
    submitter = {"Authorization": f"Bearer {make_token('submit')}"}
    assert_error(anonymous.post("/updates/1/cancel", headers=submitter), 404, ["path", "job_id"])


def test_revoked_tokens_are_refused_and_only_digests_are_stored(anonymous, make_token, session):
    token = make_token("read", name="soon-revoked")
    headers = {"Authorization": f"Bearer {token}"}
    assert anonymous.get("/models", headers=headers).status_code == 200
    row = session.query(ApiToken).filter_by(name="soon-revoked").one()
    assert token not in (row.token_hash, row.name) and len(row.token_hash) == 64
    from db.tokens.service import revoke_token

    revoke_token(session, token_id=row.id)
    assert_error(anonymous.get("/models", headers=headers), 401, ["header", "Authorization"], "revoked")


def test_dashboard_login_sets_an_httponly_cookie(anonymous, make_token):
    form = anonymous.get("/dashboard/login?next=/dashboard/jobs/1")
    assert form.status_code == 200 and 'name="token"' in form.text
    refused = anonymous.post("/dashboard/login", data={"token": "wrong", "next": "/dashboard"})
    assert refused.status_code == 401 and "unknown or revoked" in refused.text
    no_read = anonymous.post("/dashboard/login", data={"token": make_token("submit")})
    assert no_read.status_code == 401
    token = make_token("read")
    login = anonymous.post(
        "/dashboard/login", data={"token": token, "next": "//evil.example/x"}, follow_redirects=False
    )
    assert (login.status_code, login.headers["location"]) == (303, "/dashboard")
    cookie = login.headers["set-cookie"]
    assert f"{TOKEN_COOKIE}={token}" in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie
    assert anonymous.get("/dashboard").status_code == 200
    # The same cookie authorizes the REST calls of the dashboard's scripts (read scope only here).
    assert anonymous.get("/updates").status_code == 200
    same_site = {"Origin": "http://testserver"}  # a browser names the page's origin on every write
    assert_error(anonymous.post("/updates/1/cancel", headers=same_site), 403, ["header", "Authorization"])
    anonymous.post("/dashboard/logout")
    assert anonymous.get("/dashboard", follow_redirects=False).status_code == 303


def test_auth_can_be_switched_off(settings):
    with TestClient(create_app(settings.model_copy(update={"auth_enabled": False}))) as client:
        assert client.get("/models").status_code == 200


def test_admin_command_creates_lists_and_revokes(settings, monkeypatch, capsys, anonymous):
    monkeypatch.setenv("FLIPGUARD_DATABASE_URL", settings.database_url)
    assert tokens.main(["create", "--name", "ci", "--scopes", "read,submit"]) == 0
    token = capsys.readouterr().out.strip()
    assert anonymous.get("/updates", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    assert tokens.main(["list"]) == 0
    listing = capsys.readouterr().out
    assert "ci\tread,submit" in listing and token not in listing
    token_id = listing.split("\t", 1)[0]
    assert tokens.main(["revoke", token_id]) == 0
    assert anonymous.get("/updates", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    assert tokens.main(["create", "--name", "x", "--scopes", "root"]) == 1
    assert "scopes must be" in capsys.readouterr().err


@pytest.mark.parametrize("scopes", [[], ["read", "superuser"]])
def test_unknown_scopes_are_refused(session, scopes):
    from db.errors import InvalidInput
    from db.tokens.service import create_token

    with pytest.raises(InvalidInput):
        create_token(session, name="bad", scopes=scopes)
