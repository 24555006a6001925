"""Rate limits (429 with Retry-After and RateLimit headers) and the brute-force defender."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator

import httpx
import pytest

from dropline.server.settings import Settings
from tests.support.live import LiveServer, running_server


@pytest.fixture
def strict(server_settings: Settings) -> Iterator[LiveServer]:
    settings = dataclasses.replace(
        server_settings,
        rate_limit_per_credential="5/minute",
        rate_limit_per_ip="4/minute",
        defender_max_failures=3,
        defender_ban_seconds=60,
    )
    with running_server(settings) as live:
        yield live


def test_a_burst_over_the_credential_limit_gets_429_with_headers(strict: LiveServer) -> None:
    key = strict.new_key()
    other = strict.new_key(email="other@example.com")
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=strict.url, headers=headers) as c:
        ok = [c.get("/api/v1/me") for _ in range(5)]
        assert [r.status_code for r in ok] == [200] * 5
        assert ok[0].headers["ratelimit-policy"] == '"credential";q=5;w=60'
        assert ok[0].headers["ratelimit"].startswith('"credential";r=4;t=')
        assert ok[-1].headers["ratelimit"].startswith('"credential";r=0;t=')
        refused = c.get("/api/v1/me")
    assert refused.status_code == 429
    assert refused.json()["type"].endswith("/rate-limited")
    retry = int(refused.headers["retry-after"])
    assert 1 <= retry <= 60
    assert refused.headers["ratelimit-policy"] == '"credential";q=5;w=60'
    assert refused.headers["ratelimit"] == f'"credential";r=0;t={retry}'
    # Another credential from the same address is not affected.
    r = httpx.get(strict.url + "/api/v1/me", headers={"Authorization": f"Bearer {other}"})
    assert r.status_code == 200


def test_the_sign_in_endpoints_are_limited_per_address(strict: LiveServer) -> None:
    # An unsupported grant is a plain error, not a failed authentication (no ban involved).
    data = {"grant_type": "password", "client_id": "dropline-desktop"}
    answers = [httpx.post(strict.url + "/oauth/token", data=data) for _ in range(5)]
    assert [r.status_code for r in answers[:4]] == [400] * 4
    assert answers[4].status_code == 429
    assert answers[4].json()["type"].endswith("/rate-limited")
    assert answers[4].headers["ratelimit-policy"] == '"ip";q=4;w=60'
    assert int(answers[4].headers["retry-after"]) >= 1


def test_repeated_failures_earn_a_ban_that_grows(strict: LiveServer) -> None:
    good = strict.new_key()
    bad = {"Authorization": "Bearer dlk_0000_wrong"}
    for _ in range(3):
        assert httpx.get(strict.url + "/api/v1/me", headers=bad).status_code == 401
    banned = httpx.get(strict.url + "/api/v1/me", headers={"Authorization": f"Bearer {good}"})
    assert banned.status_code == 429
    assert banned.json()["type"].endswith("/banned")
    assert 55 <= int(banned.headers["retry-after"]) <= 61
    # Liveness probes still answer.
    assert httpx.get(strict.url + "/healthz").status_code == 200

    defender = strict.app.state.security.defender  # type: ignore[attr-defined]
    [ban] = defender.bans()
    assert (ban.ip, ban.strikes) == ("127.0.0.1", 1)
    assert defender.lift("127.0.0.1")
    ok = httpx.get(strict.url + "/api/v1/me", headers={"Authorization": f"Bearer {good}"})
    assert ok.status_code == 200
    # Lifting forgives: the next ban starts again at the first step.
    for _ in range(3):
        httpx.get(strict.url + "/api/v1/me", headers=bad)
    again = httpx.get(strict.url + "/api/v1/me", headers={"Authorization": f"Bearer {good}"})
    assert 55 <= int(again.headers["retry-after"]) <= 61
    assert defender.bans()[0].strikes == 1


def test_a_ban_that_ran_out_grows_on_the_next_offence(server_settings: Settings) -> None:
    settings = dataclasses.replace(server_settings, defender_max_failures=2, defender_ban_seconds=1)
    bad = {"Authorization": "Bearer dlk_0000_wrong"}
    with running_server(settings) as live:
        for _ in range(2):
            httpx.get(live.url + "/api/v1/me", headers=bad)
        first = httpx.get(live.url + "/api/v1/me", headers=bad)
        assert first.status_code == 429 and int(first.headers["retry-after"]) <= 2
        time.sleep(2.2)  # let the one-second ban run out
        for _ in range(2):
            assert httpx.get(live.url + "/api/v1/me", headers=bad).status_code == 401
        second = httpx.get(live.url + "/api/v1/me", headers=bad)
        assert second.status_code == 429
        assert 3 <= int(second.headers["retry-after"]) <= 5
        defender = live.app.state.security.defender  # type: ignore[attr-defined]
        assert defender.bans()[0].strikes == 2


def test_wrong_passwords_on_the_sign_in_page_count_too(server_settings: Settings) -> None:
    from tests.support.browser import authorize_url, parse_form, pkce_pair

    settings = dataclasses.replace(server_settings, defender_max_failures=3)
    with running_server(settings) as live, httpx.Client() as browser:
        live.new_key()
        _v, challenge = pkce_pair()
        url = authorize_url(live.url, "http://127.0.0.1:9/cb", challenge)
        for _ in range(3):
            page = browser.get(url)
            action, fields, _ = parse_form(page.text)
            fields.update(email="alice@example.com", password="guess")
            assert browser.post(live.url + action, data=fields).status_code == 401
        banned = browser.get(url)
        assert banned.status_code == 429
        assert banned.json()["type"].endswith("/banned")


def test_admins_list_and_lift_bans(strict: LiveServer) -> None:
    from sqlalchemy import insert

    from dropline.server.storage import schema

    strict.identity.create_tenant("ops")
    strict.identity.create_user("ops", "root@ops.example", "long enough pw", admin=True)
    _id, key = strict.identity.create_api_key("ops", "root@ops.example", ("admin",))
    user_id = strict.identity.user_id(strict.identity.tenant_id("ops"), "root@ops.example")
    security = strict.app.state.security  # type: ignore[attr-defined]
    with security.db.write() as conn:
        conn.execute(insert(schema.super_admins).values(user_id=user_id, created_at=time.time()))
    for _ in range(3):
        security.defender.failure("203.0.113.9")
    with httpx.Client(base_url=strict.url, headers={"Authorization": f"Bearer {key}"}) as admin:
        bans = admin.get("/api/v1/admin/bans").json()["bans"]
        assert [(b["ip"], b["active"]) for b in bans] == [("203.0.113.9", True)]
        assert admin.delete("/api/v1/admin/bans/203.0.113.9").status_code == 204
        assert admin.get("/api/v1/admin/bans").json()["bans"] == []
        assert admin.delete("/api/v1/admin/bans/203.0.113.9").status_code == 404
