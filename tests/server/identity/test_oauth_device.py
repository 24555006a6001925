"""Device authorization grant (RFC 8628) and the /device page, against the real server."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import update

from dropline.server.storage import schema
from tests.support.browser import PASSWORD, parse_form
from tests.support.live import LiveServer

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


@pytest.fixture
def bob(live_server: LiveServer) -> str:
    live_server.new_key(tenant="acme", email="bob@example.com")
    return "bob@example.com"


def start(live: LiveServer, scope: str = "files:read files:write") -> dict[str, Any]:
    r = httpx.post(
        live.url + "/oauth/device_authorization",
        data={"client_id": "dropline-desktop", "scope": scope},
    )
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def poll(live: LiveServer, device_code: str) -> httpx.Response:
    return httpx.post(
        live.url + "/oauth/token",
        data={
            "grant_type": DEVICE_GRANT,
            "device_code": device_code,
            "client_id": "dropline-desktop",
        },
    )


def enter_code(
    live: LiveServer, user_code: str, email: str, password: str = PASSWORD, decision: str = "allow"
) -> httpx.Response:
    with httpx.Client(base_url=live.url) as browser:
        page = browser.get("/device")
        assert page.status_code == 200
        action, fields, _ = parse_form(page.text)
        fields.update(user_code=user_code, email=email, password=password, decision=decision)
        return browser.post(action, data=fields)


def test_device_flow_end_to_end(live_server: LiveServer, bob: str) -> None:
    started = start(live_server)
    assert started["verification_uri"] == live_server.url + "/device"
    assert started["verification_uri_complete"].endswith("user_code=" + started["user_code"])
    assert started["interval"] == 5 and started["expires_in"] == 600

    pending = poll(live_server, started["device_code"])
    assert pending.status_code == 400
    assert pending.json()["error"] == "authorization_pending"

    # The code typed in lower case and without the dash still matches.
    typed = started["user_code"].replace("-", "").lower()
    done = enter_code(live_server, typed, bob)
    assert done.status_code == 200
    assert "Your device is connected" in done.text

    tokens = poll(live_server, started["device_code"])
    assert tokens.status_code == 200, tokens.text
    body = tokens.json()
    assert body["refresh_token"] and body["scope"] == "files:read files:write"
    me = httpx.get(
        live_server.url + "/api/v1/me", headers={"Authorization": f"Bearer {body['access_token']}"}
    )
    assert me.json()["user"]["email"] == bob

    # The device code is spent: a second poll gets nothing.
    assert poll(live_server, started["device_code"]).status_code == 400


def test_the_complete_link_prefills_the_code(live_server: LiveServer) -> None:
    started = start(live_server)
    page = httpx.get(started["verification_uri_complete"])
    _action, fields, _text = parse_form(page.text)
    assert fields["user_code"] == started["user_code"]


def test_polling_too_fast_gets_slow_down(live_server: LiveServer) -> None:
    started = start(live_server)
    assert poll(live_server, started["device_code"]).json()["error"] == "authorization_pending"
    fast = poll(live_server, started["device_code"])
    assert fast.status_code == 400
    assert fast.json()["error"] == "slow_down"


def test_denied_on_the_page_gives_access_denied(live_server: LiveServer) -> None:
    started = start(live_server)
    r = enter_code(live_server, started["user_code"], "", "", decision="deny")
    assert r.status_code == 200 and "refused" in r.text
    denied = poll(live_server, started["device_code"])
    assert denied.json()["error"] == "access_denied"


def test_an_expired_device_code_gives_expired_token(live_server: LiveServer, bob: str) -> None:
    started = start(live_server)
    db = live_server.app.state.db  # type: ignore[attr-defined]
    with db.write() as conn:
        conn.execute(update(schema.oauth_device_codes).values(expires_at=0))
    assert poll(live_server, started["device_code"]).json()["error"] == "expired_token"
    page = enter_code(live_server, started["user_code"], bob)
    assert page.status_code == 400
    assert "not valid or has expired" in page.text


def test_a_wrong_code_or_password_on_the_page_says_so(live_server: LiveServer, bob: str) -> None:
    started = start(live_server)
    wrong_code = enter_code(live_server, "BCDF-GHJK", bob)
    assert wrong_code.status_code == 400 and "not valid or has expired" in wrong_code.text
    wrong_pw = enter_code(live_server, started["user_code"], bob, "nope")
    assert wrong_pw.status_code == 401 and "The email or password is not right" in wrong_pw.text
    assert poll(live_server, started["device_code"]).json()["error"] == "authorization_pending"


def test_unknown_client_cannot_start_a_device_flow(live_server: LiveServer) -> None:
    r = httpx.post(live_server.url + "/oauth/device_authorization", data={"client_id": "nope"})
    assert r.status_code in (400, 401)
    assert r.json()["error"] == "invalid_client"
