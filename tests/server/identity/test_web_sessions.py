"""The web client's session, without a browser: the sign-in flow's state check, the
cookie's attributes (Secure over TLS), CSRF on every state-changing call (tus uploads
and sign-out included), sessions ending on expiry, idleness, a disabled user or a
revoked sign-in, and a bearer credential taking precedence over the cookie."""

from __future__ import annotations

import dataclasses
import re
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import trustme

from dropline.server.identity.web_sessions import WebSessions
from dropline.server.settings import Settings
from tests.server import tus
from tests.support.browser import PASSWORD, parse_form
from tests.support.live import LiveServer, running_server

EMAIL = "dora@example.com"


def web_sign_in(client: httpx.Client, email: str = EMAIL) -> str:
    """The whole browser flow with a cookie jar; returns the page's CSRF token."""
    login = client.get("/web/login")
    assert login.status_code == 303
    form_page = client.get(login.headers["location"])
    assert form_page.status_code == 200, form_page.text
    action, fields, text = parse_form(form_page.text)
    assert "Dropline on the web" in text
    fields.update(email=email, password=PASSWORD, decision="allow")
    back = client.post(action, data=fields)
    assert back.status_code == 302, back.text
    assert back.headers["location"].startswith(str(client.base_url) + "/web/callback?")
    done = client.get(back.headers["location"])
    assert done.status_code == 303
    assert done.headers["location"] == "/"
    home = client.get("/")
    assert home.status_code == 200
    found = re.search(r'name="csrf-token" content="([0-9a-f]{64})"', home.text)
    assert found is not None
    return found.group(1)


@pytest.fixture
def dora(live_server: LiveServer) -> Iterator[tuple[httpx.Client, str]]:
    live_server.new_key(tenant="acme", email=EMAIL)
    with httpx.Client(base_url=live_server.url, timeout=30) as client:
        yield client, web_sign_in(client)


def test_the_page_without_a_session_goes_to_the_sign_in(live_server: LiveServer) -> None:
    first = httpx.get(live_server.url + "/")
    assert first.status_code == 303
    assert first.headers["location"] == "/web/login"
    login = httpx.get(live_server.url + "/web/login")
    target = login.headers["location"]
    assert "client_id=dropline-web" in target
    assert "code_challenge_method=S256" in target
    cookie = login.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/web/" in cookie


def test_a_callback_this_browser_did_not_start_is_refused(
    live_server: LiveServer, dora: tuple[httpx.Client, str]
) -> None:
    client, _token = dora
    stranger = httpx.get(live_server.url + "/web/callback", params={"code": "x", "state": "y"})
    assert stranger.status_code == 400
    assert "dl_session" not in stranger.headers.get("set-cookie", "")
    assert "not started in this browser" in stranger.text
    # A started attempt with another state is refused too.
    client.get("/web/login")
    forged = client.get("/web/callback", params={"code": "x", "state": "not-the-state"})
    assert forged.status_code == 400


def test_the_session_cookie_is_secure_over_tls(server_settings: Settings, tmp_path: Path) -> None:
    ca = trustme.CA()
    ca.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(tmp_path / "s.pem")
    ca.cert_pem.write_to_path(tmp_path / "ca.pem")
    settings = dataclasses.replace(
        server_settings, tls_cert=tmp_path / "s.pem", tls_key=tmp_path / "s.pem"
    )
    with running_server(settings) as live:
        live.new_key(tenant="acme", email=EMAIL)
        trust = ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))
        with httpx.Client(base_url=live.url, verify=trust) as client:
            login = client.get("/web/login")
            assert "Secure" in login.headers["set-cookie"]
            assert login.headers["location"].startswith(live.url + "/oauth/authorize?")
            client.cookies.clear()
            web_sign_in(client)
            session = next(c for c in client.cookies.jar if c.name == "dl_session")
            assert session.secure
            assert session.has_nonstandard_attr("HttpOnly")


def test_every_state_changing_call_needs_the_csrf_token(
    live_server: LiveServer, dora: tuple[httpx.Client, str]
) -> None:
    client, token = dora
    client.headers["Tus-Resumable"] = "1.0.0"
    refused = tus.upload(client, "/no-token.txt", b"x")
    assert refused.status_code == 403
    assert refused.json()["type"].endswith("/forbidden")
    assert client.get("/api/v1/metadata", params={"path": "/no-token.txt"}).status_code == 404
    client.headers["X-CSRF-Token"] = token
    done = tus.upload(client, "/with-token.txt", b"y")
    assert done.status_code in (200, 201, 204), done.text
    entry = client.get("/api/v1/metadata", params={"path": "/with-token.txt"}).json()
    del client.headers["X-CSRF-Token"]
    assert client.delete(f"/api/v1/files/{entry['id']}").status_code == 403
    assert client.get(f"/api/v1/files/{entry['id']}").status_code == 200
    # Sign-out is a state change as well: a cross-site form cannot sign anyone out.
    assert client.post("/web/logout", data={"csrf_token": "0" * 64}).status_code == 403
    assert client.get("/api/v1/me").status_code == 200


def test_a_disabled_user_or_a_revoked_sign_in_ends_the_session(
    live_server: LiveServer, dora: tuple[httpx.Client, str]
) -> None:
    client, _token = dora
    live_server.identity.create_user("acme", "boss@example.com", PASSWORD, admin=True)
    _id, key = live_server.identity.create_api_key("acme", "boss@example.com", ("admin",))
    admin = httpx.Client(base_url=live_server.url, headers={"Authorization": f"Bearer {key}"})
    me = client.get("/api/v1/me").json()
    disabled = admin.patch(f"/api/v1/admin/users/{me['user']['id']}", json={"active": False})
    assert disabled.status_code == 200, disabled.text
    assert client.get("/api/v1/me").status_code == 401
    assert client.get("/").headers["location"] == "/web/login"
    admin.close()


def test_sessions_end_when_too_old_or_idle_too_long(live_server: LiveServer) -> None:
    live_server.new_key(tenant="acme", email=EMAIL)
    db = live_server.app.state.db  # type: ignore[attr-defined]
    sessions = WebSessions(db, lifetime=3600, idle=600)
    with httpx.Client(base_url=live_server.url) as client:
        web_sign_in(client)
        grant_id = client.get("/api/v1/me").json()["credential"]["id"]
    tenant = live_server.identity.tenant_id("acme")
    user = live_server.identity.user_id(tenant, EMAIL)
    session_id = sessions.create(tenant, user, grant_id, "files:read")
    now = time.time()
    assert sessions.lookup(session_id, now + 60) is not None
    assert sessions.lookup(session_id, now + 601 + 60) is None  # idle past 10 minutes
    assert sessions.lookup(session_id, now + 3601) is None  # past its lifetime
    assert sessions.lookup("not-a-session") is None
    ended = sessions.end(session_id)
    assert ended is not None and ended.grant_id == grant_id
    assert sessions.lookup(session_id) is None


def test_a_bearer_credential_wins_over_the_cookie(
    live_server: LiveServer, dora: tuple[httpx.Client, str]
) -> None:
    client, _token = dora
    key = live_server.new_key(tenant="globex", email="gus@example.com")
    as_key = client.get("/api/v1/me", headers={"Authorization": f"Bearer {key}"})
    assert as_key.json()["user"]["email"] == "gus@example.com"
    assert as_key.json()["credential"]["kind"] == "api_key"
    # With a bearer credential, no CSRF header is needed: the browser never sends one.
    made = client.post(
        "/api/v1/folders", json={"path": "/by-key"}, headers={"Authorization": f"Bearer {key}"}
    )
    assert made.status_code == 201
