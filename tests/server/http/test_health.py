from __future__ import annotations

import httpx

from tests.support.live import LiveServer


def test_healthz_and_readyz_answer(live_server: LiveServer) -> None:
    assert httpx.get(live_server.url + "/healthz").json() == {"status": "ok"}
    ready = httpx.get(live_server.url + "/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"database": "ok", "storage": "ok"}


def test_api_without_credential_is_401_problem(live_server: LiveServer) -> None:
    r = httpx.get(live_server.url + "/api/v1/me")
    assert r.status_code == 401
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["type"].endswith("/unauthenticated")


def test_me_names_the_caller_from_the_key(live_server: LiveServer, api_key: str) -> None:
    r = httpx.get(live_server.url + "/api/v1/me", headers={"Authorization": f"Bearer {api_key}"})
    assert r.status_code == 200
    body = r.json()
    assert body["user"]["email"] == "alice@example.com"
    assert body["tenant"]["name"] == "acme"
    assert body["credential"]["kind"] == "api_key"


def test_forged_key_is_401_invalid_token(live_server: LiveServer, api_key: str) -> None:
    forged = api_key[:-4] + "AAAA"
    r = httpx.get(live_server.url + "/api/v1/me", headers={"Authorization": f"Bearer {forged}"})
    assert r.status_code == 401
    assert 'error="invalid_token"' in r.headers["www-authenticate"]
