"""JWT access tokens: forged, foreign and expired tokens are refused; keys rotate softly."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, OctKey

from tests.support.browser import refresh_grant
from tests.support.live import LiveServer


def b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def claims_of(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    parsed: dict[str, Any] = json.loads(
        base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    )
    return parsed


def get_me(live: LiveServer, token: str) -> httpx.Response:
    return httpx.get(live.url + "/api/v1/me", headers={"Authorization": f"Bearer {token}"})


def server_key(live: LiveServer) -> ECKey:
    key: ECKey = live.app.state.security.keys.current()  # type: ignore[attr-defined]
    return key


def sign(key: Any, claims: dict[str, Any], alg: str = "ES256", kid: str | None = None) -> str:
    header = {"alg": alg, "kid": kid or key.kid}
    return jwt.encode(header, claims, key, algorithms=[alg])


Forge = Callable[[LiveServer, dict[str, Any]], str]

FORGERIES: dict[str, Forge] = {
    "alg none": lambda live, c: f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(c)}.",
    "another key with the same kid": lambda live, c: sign(
        ECKey.generate_key("P-256"), c, kid=server_key(live).kid
    ),
    "HS256 keyed with the public key": lambda live, c: sign(
        OctKey.import_key(json.dumps(server_key(live).as_dict(private=False)).encode()),
        c,
        alg="HS256",
        kid=server_key(live).kid,
    ),
    "wrong audience": lambda live, c: sign(server_key(live), {**c, "aud": "https://other.example"}),
    "wrong issuer": lambda live, c: sign(server_key(live), {**c, "iss": "https://evil.example"}),
    "expired": lambda live, c: sign(
        server_key(live),
        {**c, "iat": c["iat"] - 7200, "nbf": c["iat"] - 7200, "exp": c["iat"] - 3600},
    ),
    "not yet valid": lambda live, c: sign(server_key(live), {**c, "nbf": int(time.time()) + 3600}),
    "no expiry": lambda live, c: sign(server_key(live), {k: v for k, v in c.items() if k != "exp"}),
    "unknown sign-in": lambda live, c: sign(server_key(live), {**c, "sid": "0" * 36}),
}


@pytest.mark.parametrize("case", sorted(FORGERIES))
def test_forged_token_is_401_invalid_token(
    live_server: LiveServer, signed_in: dict[str, Any], case: str
) -> None:
    claims = claims_of(signed_in["access_token"])
    forged = FORGERIES[case](live_server, claims)
    r = get_me(live_server, forged)
    assert r.status_code == 401, case
    assert 'error="invalid_token"' in r.headers["www-authenticate"]
    assert r.json()["type"].endswith("/invalid-token")


def test_a_tampered_payload_breaks_the_signature(
    live_server: LiveServer, signed_in: dict[str, Any]
) -> None:
    head, _payload, sig = signed_in["access_token"].split(".")
    claims = claims_of(signed_in["access_token"])
    claims["scope"] = "files:read files:write admin"
    r = get_me(live_server, f"{head}.{b64(claims)}.{sig}")
    assert r.status_code == 401


def test_the_genuine_token_carries_the_documented_claims(
    live_server: LiveServer, signed_in: dict[str, Any]
) -> None:
    head = json.loads(base64.urlsafe_b64decode(signed_in["access_token"].split(".")[0] + "=="))
    assert head["alg"] == "ES256" and head["kid"] == server_key(live_server).kid
    claims = claims_of(signed_in["access_token"])
    assert claims["iss"] == live_server.url
    assert claims["aud"] == live_server.url + "/api/v1"
    assert claims["exp"] - claims["iat"] == 900
    assert {"sub", "tid", "sid", "jti", "client_id", "scope", "nbf"} <= set(claims)


def test_key_rotation_logs_nobody_out(live_server: LiveServer, signed_in: dict[str, Any]) -> None:
    keys = live_server.app.state.security.keys  # type: ignore[attr-defined]
    old_kid = server_key(live_server).kid
    new_kid = keys.rotate()
    assert new_kid != old_kid
    published = {
        k["kid"] for k in httpx.get(live_server.url + "/.well-known/jwks.json").json()["keys"]
    }
    assert published == {old_kid, new_kid}
    # The token signed before the rotation still works; refreshing gives one signed by the new key.
    assert get_me(live_server, signed_in["access_token"]).status_code == 200
    refreshed = refresh_grant(live_server.url, signed_in["refresh_token"]).json()
    head = json.loads(base64.urlsafe_b64decode(refreshed["access_token"].split(".")[0] + "=="))
    assert head["kid"] == new_kid
    # Retiring the old key ends only what it signed.
    keys.retire(old_kid)
    assert get_me(live_server, signed_in["access_token"]).status_code == 401
    assert get_me(live_server, refreshed["access_token"]).status_code == 200


def test_signing_keys_are_private_files(live_server: LiveServer, signed_in: dict[str, Any]) -> None:
    key_dir = live_server.settings.data_dir / "keys"
    assert key_dir.stat().st_mode & 0o777 == 0o700
    files = list(key_dir.iterdir())
    assert files and all(f.stat().st_mode & 0o777 == 0o600 for f in files)
