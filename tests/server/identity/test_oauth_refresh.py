"""Refresh token rotation and reuse detection, revocation, and client credentials."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.support.browser import refresh_grant
from tests.support.live import LiveServer


def refresh(live: LiveServer, refresh_token: str) -> httpx.Response:
    return refresh_grant(live.url, refresh_token)


def me(live: LiveServer, access_token: str) -> httpx.Response:
    return httpx.get(live.url + "/api/v1/me", headers={"Authorization": f"Bearer {access_token}"})


def test_refresh_rotates_both_tokens(live_server: LiveServer, signed_in: dict[str, Any]) -> None:
    first = refresh(live_server, signed_in["refresh_token"])
    assert first.status_code == 200, first.text
    new = first.json()
    assert new["refresh_token"] != signed_in["refresh_token"]
    assert new["access_token"] != signed_in["access_token"]
    assert new["scope"] == signed_in["scope"]
    assert me(live_server, new["access_token"]).status_code == 200
    second = refresh(live_server, new["refresh_token"])
    assert second.status_code == 200


def test_reusing_a_spent_refresh_token_revokes_the_whole_family(
    live_server: LiveServer, signed_in: dict[str, Any]
) -> None:
    rotated = refresh(live_server, signed_in["refresh_token"]).json()
    assert me(live_server, rotated["access_token"]).status_code == 200

    replay = refresh(live_server, signed_in["refresh_token"])
    assert replay.status_code == 400
    assert replay.json()["error"] == "invalid_grant"

    # Everything of that sign-in is dead: the new refresh token and every access token.
    assert refresh(live_server, rotated["refresh_token"]).json()["error"] == "invalid_grant"
    for access in (signed_in["access_token"], rotated["access_token"]):
        r = me(live_server, access)
        assert r.status_code == 401
        assert 'error="invalid_token"' in r.headers["www-authenticate"]


def test_refresh_cannot_widen_the_scope(live_server: LiveServer, signed_in: dict[str, Any]) -> None:
    r = refresh_grant(live_server.url, signed_in["refresh_token"], scope="files:read admin")
    assert r.status_code == 400
    assert r.json()["error"] == "invalid_scope"


def test_a_refresh_token_is_bound_to_its_client(
    live_server: LiveServer, signed_in: dict[str, Any]
) -> None:
    r = refresh_grant(live_server.url, signed_in["refresh_token"], client_id="someone-else")
    assert r.status_code in (400, 401)
    assert r.json()["error"] == "invalid_client"


@pytest.mark.parametrize("which", ["refresh_token", "access_token"])
def test_revoking_either_token_ends_the_sign_in(
    live_server: LiveServer, signed_in: dict[str, Any], which: str
) -> None:
    r = httpx.post(
        live_server.url + "/oauth/revoke",
        data={"token": signed_in[which], "token_type_hint": which, "client_id": "dropline-desktop"},
    )
    assert r.status_code == 200
    assert me(live_server, signed_in["access_token"]).status_code == 401
    assert refresh(live_server, signed_in["refresh_token"]).json()["error"] == "invalid_grant"


def test_revoking_an_unknown_token_answers_200(live_server: LiveServer) -> None:
    r = httpx.post(
        live_server.url + "/oauth/revoke",
        data={"token": "not-a-token", "client_id": "dropline-desktop"},
    )
    assert r.status_code == 200


def _service_client(live: LiveServer, scopes: tuple[str, ...]) -> tuple[str, str]:
    security = live.app.state.security  # type: ignore[attr-defined]
    live.new_key(tenant="acme", email="robot@acme.example")
    tenant_id = live.identity.tenant_id("acme")
    user_id = live.identity.user_id(tenant_id, "robot@acme.example")
    with security.db.write() as conn:
        client, secret = security.store.create_client(
            conn,
            tenant_id=tenant_id,
            name="ERP export",
            grant_types=("client_credentials",),
            scopes=scopes,
            service_user_id=user_id,
        )
    return client.client_id, secret


def test_client_credentials_gives_a_service_token(live_server: LiveServer) -> None:
    client_id, secret = _service_client(live_server, ("files:read", "files:write"))
    r = httpx.post(
        live_server.url + "/oauth/token",
        data={"grant_type": "client_credentials", "scope": "files:read"},
        auth=(client_id, secret),
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert "refresh_token" not in body
    assert body["scope"] == "files:read"
    who = me(live_server, body["access_token"]).json()
    assert who["user"]["email"] == "robot@acme.example"
    assert who["scopes"] == ["files:read"]


def test_client_credentials_refuses_a_wrong_secret_or_scope(live_server: LiveServer) -> None:
    client_id, secret = _service_client(live_server, ("files:read",))
    wrong = httpx.post(
        live_server.url + "/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(client_id, secret + "x"),
    )
    assert wrong.status_code == 401
    assert wrong.json()["error"] == "invalid_client"
    wider = httpx.post(
        live_server.url + "/oauth/token",
        data={"grant_type": "client_credentials", "scope": "files:write"},
        auth=(client_id, secret),
    )
    assert wider.status_code == 400
    assert wider.json()["error"] == "invalid_scope"


def test_the_public_desktop_client_cannot_use_client_credentials(live_server: LiveServer) -> None:
    r = httpx.post(
        live_server.url + "/oauth/token",
        data={"grant_type": "client_credentials", "client_id": "dropline-desktop"},
    )
    assert r.status_code in (400, 401)
    assert r.json()["error"] in ("invalid_client", "unauthorized_client")
