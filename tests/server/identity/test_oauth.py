"""Authorization code + PKCE for the desktop client, against the real server."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from sqlalchemy import select

from dropline.server.storage import schema
from tests.support.browser import (
    PASSWORD,
    LoopbackListener,
    authorize_url,
    parse_form,
    pkce_pair,
    pkce_tokens,
    sign_in,
)
from tests.support.live import LiveServer


@pytest.fixture
def alice(live_server: LiveServer) -> str:
    live_server.new_key(tenant="acme", email="alice@example.com")
    return "alice@example.com"


def audit_rows(live: LiveServer, action: str) -> list[object]:
    with live.app.state.db.read() as conn:  # type: ignore[attr-defined]
        return list(
            conn.execute(
                select(schema.audit_events)
                .where(schema.audit_events.c.action == action)
                .order_by(schema.audit_events.c.seq)
            )
        )


def test_metadata_names_every_endpoint_and_only_s256(live_server: LiveServer) -> None:
    doc = httpx.get(live_server.url + "/.well-known/oauth-authorization-server").json()
    assert doc["issuer"] == live_server.url
    assert doc["token_endpoint"] == live_server.url + "/oauth/token"
    assert doc["device_authorization_endpoint"] == live_server.url + "/oauth/device_authorization"
    assert doc["revocation_endpoint"] == live_server.url + "/oauth/revoke"
    assert doc["jwks_uri"] == live_server.url + "/.well-known/jwks.json"
    assert doc["code_challenge_methods_supported"] == ["S256"]
    keys = httpx.get(doc["jwks_uri"]).json()["keys"]
    assert keys and all(k["kty"] == "EC" and k["kid"] and "d" not in k for k in keys)


def test_pkce_sign_in_end_to_end_gives_working_tokens(live_server: LiveServer, alice: str) -> None:
    tokens = pkce_tokens(live_server.url, alice)
    assert tokens["token_type"] == "Bearer"
    assert tokens["expires_in"] == 900
    assert tokens["scope"] == "files:read files:write"
    assert tokens["refresh_token"]
    me = httpx.get(
        live_server.url + "/api/v1/me",
        headers={"Authorization": f"Bearer {tokens['access_token']}"},
    )
    assert me.status_code == 200, me.text
    assert me.json()["user"]["email"] == alice
    assert me.json()["credential"]["kind"] == "oauth"
    assert me.json()["scopes"] == ["files:read", "files:write"]
    signins = audit_rows(live_server, "auth.signin")
    assert [r.outcome for r in signins] == ["success"]  # type: ignore[attr-defined]
    issued = audit_rows(live_server, "oauth.token")
    assert len(issued) == 1 and issued[0].request_id  # type: ignore[attr-defined]


def test_state_comes_back_unchanged(live_server: LiveServer, alice: str) -> None:
    _verifier, challenge = pkce_pair()
    with LoopbackListener() as listener, httpx.Client(base_url=live_server.url) as browser:
        url = authorize_url(live_server.url, listener.redirect_uri, challenge, state="a b&c")
        done = sign_in(browser, url, alice)
    query = parse_qs(urlsplit(done.headers["location"]).query)
    assert query["state"] == ["a b&c"]
    assert done.headers["location"].startswith(listener.redirect_uri + "?")


def test_non_admin_cannot_obtain_tenant_wide_scopes(live_server: LiveServer, alice: str) -> None:
    tokens = pkce_tokens(live_server.url, alice, scope="files:read admin audit:read webhooks")
    assert tokens["scope"] == "files:read"


@pytest.mark.parametrize(
    "redirect_uri",
    [
        "http://127.0.0.1:1/cb",
        "http://127.0.0.1:65000/any/path?x=1",
        "http://[::1]:43123/callback",
    ],
)
def test_loopback_redirect_on_any_port_is_accepted(
    live_server: LiveServer, redirect_uri: str
) -> None:
    _verifier, challenge = pkce_pair()
    page = httpx.get(authorize_url(live_server.url, redirect_uri, challenge))
    assert page.status_code == 200
    _action, fields, text = parse_form(page.text)
    assert fields["redirect_uri"] == redirect_uri
    assert "Dropline desktop" in text


@pytest.mark.parametrize(
    "redirect_uri",
    [
        "http://evil.example/cb",
        "https://127.0.0.1.evil.example/cb",
        "http://localhost:8000/cb",
        "https://127.0.0.1:443/cb",
        "http://user@127.0.0.1:8000/cb",
    ],
)
def test_other_redirects_are_refused_without_redirecting(
    live_server: LiveServer, redirect_uri: str
) -> None:
    _verifier, challenge = pkce_pair()
    page = httpx.get(authorize_url(live_server.url, redirect_uri, challenge))
    assert page.status_code == 400
    assert "location" not in page.headers
    assert "not valid" in page.text


def test_registered_client_needs_exact_redirect_match(live_server: LiveServer) -> None:
    security = live_server.app.state.security  # type: ignore[attr-defined]
    tenant_id = live_server.identity.create_tenant("globex")
    with security.db.write() as conn:
        client, _ = security.store.create_client(
            conn,
            tenant_id=tenant_id,
            name="Partner portal",
            grant_types=("authorization_code",),
            scopes=("files:read",),
            redirect_uris=("https://portal.example/cb",),
            confidential=False,
        )
    _verifier, challenge = pkce_pair()
    ok = httpx.get(
        authorize_url(
            live_server.url, "https://portal.example/cb", challenge, client_id=client.client_id
        )
    )
    assert ok.status_code == 200
    for near in (
        "https://portal.example/cb/",
        "https://portal.example/cb?x=1",
        "http://127.0.0.1:9/cb",
    ):
        bad = httpx.get(authorize_url(live_server.url, near, challenge, client_id=client.client_id))
        assert bad.status_code == 400 and "location" not in bad.headers, near


@pytest.mark.parametrize("method", ["plain", None])
def test_pkce_other_than_s256_is_refused(live_server: LiveServer, method: str | None) -> None:
    verifier, _challenge = pkce_pair()
    with LoopbackListener() as listener:
        r = httpx.get(
            authorize_url(live_server.url, listener.redirect_uri, verifier, method=method)
        )
    assert r.status_code == 302
    query = parse_qs(urlsplit(r.headers["location"]).query)
    assert query["error"] == ["invalid_request"]
    assert "S256" in query["error_description"][0]


def test_missing_code_challenge_is_refused(live_server: LiveServer) -> None:
    with LoopbackListener() as listener:
        url = authorize_url(live_server.url, listener.redirect_uri, "", method=None)
        r = httpx.get(url.replace("&code_challenge=", "&x="))
    assert r.status_code == 302
    assert "error=invalid_request" in r.headers["location"]


def test_wrong_password_shows_a_clear_message_and_is_audited(
    live_server: LiveServer, alice: str
) -> None:
    _verifier, challenge = pkce_pair()
    with LoopbackListener() as listener, httpx.Client(base_url=live_server.url) as browser:
        r = sign_in(
            browser,
            authorize_url(live_server.url, listener.redirect_uri, challenge),
            alice,
            "wrong",
        )
    assert r.status_code == 401
    assert "location" not in r.headers
    assert "The email or password is not right" in r.text
    _action, fields, _text = parse_form(r.text)
    assert fields["email"] == alice and fields["password"] == ""
    rows = audit_rows(live_server, "auth.signin")
    assert [(x.outcome, x.actor) for x in rows] == [("failure", alice)]  # type: ignore[attr-defined]
    events = live_server.app.state.db  # type: ignore[attr-defined]
    with events.read() as conn:
        types = [e.type for e in conn.execute(select(schema.events.c.type))]
    assert types == ["auth.failed"]


def test_sign_in_post_without_the_csrf_token_is_refused(
    live_server: LiveServer, alice: str
) -> None:
    _verifier, challenge = pkce_pair()
    with LoopbackListener() as listener, httpx.Client(base_url=live_server.url) as browser:
        page = browser.get(authorize_url(live_server.url, listener.redirect_uri, challenge))
        action, fields, _ = parse_form(page.text)
        fields.update(email=alice, password=PASSWORD, decision="allow")
        forged = dict(fields, csrf_token="0" * 64)
        r = browser.post(action, data=forged)
        assert r.status_code == 400 and "location" not in r.headers
        # A cross-site post carries no cookie at all.
        r2 = httpx.post(live_server.url + action, data=fields)
        assert r2.status_code == 400 and "location" not in r2.headers
    assert not audit_rows(live_server, "auth.signin")


def test_cancel_sends_access_denied_to_the_app(live_server: LiveServer, alice: str) -> None:
    _verifier, challenge = pkce_pair()
    with LoopbackListener() as listener, httpx.Client(base_url=live_server.url) as browser:
        page = browser.get(authorize_url(live_server.url, listener.redirect_uri, challenge))
        action, fields, _ = parse_form(page.text)
        r = browser.post(action, data=dict(fields, decision="deny"))
    assert r.status_code == 302
    assert "error=access_denied" in r.headers["location"]


def _code_and_verifier(live: LiveServer, email: str) -> tuple[str, str, str]:
    verifier, challenge = pkce_pair()
    with LoopbackListener() as listener, httpx.Client(base_url=live.url) as browser:
        done = sign_in(browser, authorize_url(live.url, listener.redirect_uri, challenge), email)
        code = parse_qs(urlsplit(done.headers["location"]).query)["code"][0]
        return code, verifier, listener.redirect_uri


def _exchange(live: LiveServer, code: str, verifier: str, redirect_uri: str) -> httpx.Response:
    return httpx.post(
        live.url + "/oauth/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "client_id": "dropline-desktop",
            "code_verifier": verifier,
        },
    )


def test_a_code_works_once(live_server: LiveServer, alice: str) -> None:
    code, verifier, redirect_uri = _code_and_verifier(live_server, alice)
    assert _exchange(live_server, code, verifier, redirect_uri).status_code == 200
    again = _exchange(live_server, code, verifier, redirect_uri)
    assert again.status_code == 400
    assert again.json()["error"] == "invalid_grant"


def test_a_wrong_code_verifier_is_refused(live_server: LiveServer, alice: str) -> None:
    code, _verifier, redirect_uri = _code_and_verifier(live_server, alice)
    other, _ = pkce_pair()
    r = _exchange(live_server, code, other, redirect_uri)
    assert r.status_code == 400
    assert r.json()["error"] == "invalid_grant"


def test_the_code_is_bound_to_its_redirect_uri(live_server: LiveServer, alice: str) -> None:
    code, verifier, redirect_uri = _code_and_verifier(live_server, alice)
    r = _exchange(live_server, code, verifier, redirect_uri.replace("/callback", "/other"))
    assert r.status_code == 400
    assert r.json()["error"] == "invalid_grant"


def test_pages_are_not_framable_and_not_cached(live_server: LiveServer) -> None:
    _verifier, challenge = pkce_pair()
    page = httpx.get(authorize_url(live_server.url, "http://127.0.0.1:9/cb", challenge))
    assert page.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert page.headers["cache-control"] == "no-store"
    assert "<script" not in page.text
