"""Credentials against the real server (API keys; OAuth refresh with rotation and reuse
detection) and, for cases the real server cannot be steered into (a slow or failing token
endpoint, a resource that always says 401), a stand-in OAuth provider: an in-process
ASGI token endpoint that rotates refresh tokens and revokes the family on reuse."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from dropline.sdk.client import DroplineClient
from dropline.sdk.credentials import ApiKeyCredentials, OAuthCredentials
from dropline.sdk.errors import AuthenticationError, UnavailableError
from dropline.sdk.retry import RetryPolicy
from tests.support.browser import refresh_grant
from tests.support.live import LiveServer

CLIENT_ID = "dropline-agent"


@dataclass
class Provider:
    """Issues tokens; ``/api/v1/me`` accepts only live access tokens."""

    lifetime: int = 3600
    refresh_tokens: dict[str, bool] = field(default_factory=dict)  # token -> still unspent
    access_tokens: set[str] = field(default_factory=set)
    forms: list[dict[str, str]] = field(default_factory=list)
    content_types: list[str] = field(default_factory=list)
    family_revoked: bool = False
    token_delay: float = 0.0
    fail_with: int | None = None

    def issue_refresh(self) -> str:
        token = "rt_" + secrets.token_urlsafe(8)
        self.refresh_tokens[token] = True
        return token

    async def token(self, request: Request) -> Response:
        self.content_types.append(request.headers.get("content-type", ""))
        form = {k: str(v) for k, v in (await request.form()).items()}
        self.forms.append(form)
        if self.token_delay:
            await asyncio.sleep(self.token_delay)
        if self.fail_with is not None:
            return JSONResponse({"error": "temporarily_unavailable"}, status_code=self.fail_with)
        presented = form.get("refresh_token", "")
        if form.get("grant_type") != "refresh_token" or form.get("client_id") != CLIENT_ID:
            return JSONResponse({"error": "invalid_request"}, status_code=400)
        if self.family_revoked or presented not in self.refresh_tokens:
            return JSONResponse({"error": "invalid_grant"}, status_code=400)
        if not self.refresh_tokens[presented]:
            # Reuse of a spent refresh token: revoke the whole sign-in.
            self.family_revoked = True
            self.access_tokens.clear()
            return JSONResponse({"error": "invalid_grant"}, status_code=400)
        self.refresh_tokens[presented] = False
        access = "at_" + secrets.token_urlsafe(8)
        self.access_tokens.add(access)
        return JSONResponse(
            {
                "access_token": access,
                "token_type": "Bearer",
                "expires_in": self.lifetime,
                "refresh_token": self.issue_refresh(),
                "scope": "files:read files:write",
            }
        )

    async def me(self, request: Request) -> Response:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme != "Bearer" or token not in self.access_tokens:
            return JSONResponse(
                {"type": "https://dropline.dev/problems/invalid-token", "title": "Invalid"},
                status_code=401,
                media_type="application/problem+json",
            )
        return JSONResponse(
            {
                "user": {"id": "u1", "email": "bob@example.com"},
                "tenant": {"id": "t1", "name": "acme"},
                "credential": {"id": "c1", "kind": "oauth"},
                "scopes": ["files:read"],
            }
        )

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/oauth/token", self.token, methods=["POST"]),
                Route("/api/v1/me", self.me, methods=["GET"]),
            ]
        )


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


class Rotations:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, float | None]] = []

    def __call__(self, refresh: str, access: str, expires_at: float | None) -> None:
        self.calls.append((refresh, access, expires_at))


BASE = "http://provider.test"


def make(
    provider: Provider, *, access: str | None, expires_at: float | None, clock: Clock
) -> tuple[OAuthCredentials, Rotations]:
    rotations = Rotations()
    creds = OAuthCredentials(
        access,
        provider.issue_refresh(),
        f"{BASE}/oauth/token",
        CLIENT_ID,
        expires_at,
        rotations,
        clock=clock,
    )
    return creds, rotations


def client(provider: Provider, creds: httpx.Auth) -> DroplineClient:
    return DroplineClient(
        BASE,
        creds,
        transport=httpx.ASGITransport(app=provider.app()),
        retry=RetryPolicy(attempts=1),
    )


@pytest.mark.anyio
async def test_refreshes_before_expiry_and_persists_the_rotated_token() -> None:
    provider, clock = Provider(), Clock()
    creds, rotations = make(provider, access="at_old", expires_at=clock.now + 30, clock=clock)
    first_refresh = next(iter(provider.refresh_tokens))
    async with client(provider, creds) as api:
        account = await api.me()
    assert account.email == "bob@example.com"
    assert len(provider.forms) == 1
    form = provider.forms[0]
    assert form == {
        "grant_type": "refresh_token",
        "refresh_token": first_refresh,
        "client_id": CLIENT_ID,
    }
    assert provider.content_types[0].startswith("application/x-www-form-urlencoded")
    assert len(rotations.calls) == 1
    new_refresh, new_access, expires_at = rotations.calls[0]
    assert new_refresh != first_refresh and provider.refresh_tokens[new_refresh]
    assert new_access in provider.access_tokens
    assert expires_at == clock.now + provider.lifetime


@pytest.mark.anyio
async def test_a_fresh_token_is_used_without_refreshing() -> None:
    provider, clock = Provider(), Clock()
    provider.access_tokens.add("at_live")
    creds, rotations = make(provider, access="at_live", expires_at=clock.now + 3600, clock=clock)
    async with client(provider, creds) as api:
        await api.me()
        await api.me()
    assert provider.forms == []
    assert rotations.calls == []


@pytest.mark.anyio
async def test_without_an_access_token_it_refreshes_first() -> None:
    provider, clock = Provider(), Clock()
    creds, rotations = make(provider, access=None, expires_at=None, clock=clock)
    async with client(provider, creds) as api:
        await api.me()
    assert len(rotations.calls) == 1


@pytest.mark.anyio
async def test_a_401_triggers_one_refresh_and_one_resend() -> None:
    provider, clock = Provider(), Clock()
    # Not expired by the clock, but revoked on the server side.
    creds, rotations = make(provider, access="at_revoked", expires_at=clock.now + 3600, clock=clock)
    async with client(provider, creds) as api:
        account = await api.me()
    assert account.tenant_name == "acme"
    assert len(provider.forms) == 1
    assert len(rotations.calls) == 1


@pytest.mark.anyio
async def test_a_401_after_refreshing_is_not_refreshed_again() -> None:
    provider, clock = Provider(), Clock()
    creds, _rotations = make(
        provider, access="at_revoked", expires_at=clock.now + 3600, clock=clock
    )
    original_me = provider.me

    async def always_401(request: Request) -> Response:
        return JSONResponse({}, status_code=401)

    provider.me = always_401  # type: ignore[method-assign]
    async with client(provider, creds) as api:
        with pytest.raises(AuthenticationError):
            await api.me()
    provider.me = original_me  # type: ignore[method-assign]
    assert len(provider.forms) == 1  # one refresh, no loop


@pytest.mark.anyio
async def test_concurrent_requests_share_one_refresh() -> None:
    # Two refreshes with the same token would be a reuse: the provider would revoke
    # the whole sign-in and every request would fail.
    provider, clock = Provider(), Clock()
    provider.token_delay = 0.05
    creds, rotations = make(provider, access="at_old", expires_at=clock.now - 1, clock=clock)
    async with client(provider, creds) as api:
        accounts = await asyncio.gather(*(api.me() for _ in range(8)))
    assert all(a.email == "bob@example.com" for a in accounts)
    assert len(provider.forms) == 1
    assert len(rotations.calls) == 1
    assert not provider.family_revoked


@pytest.mark.anyio
async def test_revoked_sign_in_is_an_authentication_error() -> None:
    provider, clock = Provider(), Clock()
    creds, rotations = make(provider, access=None, expires_at=None, clock=clock)
    provider.family_revoked = True
    async with client(provider, creds) as api:
        with pytest.raises(AuthenticationError) as caught:
            await api.me()
    assert "Sign in again" in caught.value.message
    assert not caught.value.retryable
    assert rotations.calls == []


@pytest.mark.anyio
async def test_token_endpoint_outage_is_retryable() -> None:
    provider, clock = Provider(), Clock()
    provider.fail_with = 503
    creds, _ = make(provider, access=None, expires_at=None, clock=clock)
    async with client(provider, creds) as api:
        with pytest.raises(UnavailableError):
            await api.me()


@pytest.mark.anyio
async def test_a_failing_store_does_not_lose_the_new_tokens(
    caplog: pytest.LogCaptureFixture,
) -> None:
    provider, clock = Provider(), Clock()

    def broken_store(refresh: str, access: str, expires_at: float | None) -> None:
        raise OSError("keyring locked")

    creds = OAuthCredentials(
        None,
        provider.issue_refresh(),
        f"{BASE}/oauth/token",
        CLIENT_ID,
        None,
        broken_store,
        clock=clock,
    )
    async with client(provider, creds) as api:
        await api.me()
        await api.me()
    assert len(provider.forms) == 1
    assert any("could not persist" in r.getMessage() for r in caplog.records)


@pytest.mark.anyio
async def test_tokens_never_reach_logs_or_reprs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    provider, clock = Provider(), Clock()
    creds, rotations = make(provider, access=None, expires_at=None, clock=clock)
    async with client(provider, creds) as api:
        await api.me()
    refresh, access, _ = rotations.calls[0]
    text = "\n".join(r.getMessage() for r in caplog.records) + repr(creds)
    assert refresh not in text and access not in text
    assert "dlk_secret" not in repr(ApiKeyCredentials("dlk_secret"))


def test_sync_use_of_oauth_is_refused() -> None:
    provider, clock = Provider(), Clock()
    creds, _ = make(provider, access="x", expires_at=None, clock=clock)
    with pytest.raises(RuntimeError), httpx.Client(auth=creds) as sync_client:
        sync_client.get("http://127.0.0.1:9/")


def test_api_key_must_be_clean() -> None:
    with pytest.raises(ValueError):
        ApiKeyCredentials("")
    with pytest.raises(ValueError):
        ApiKeyCredentials(" dlk_x\n")


@pytest.mark.anyio
async def test_api_key_authenticates_against_the_real_server(
    live_server: LiveServer, api_key: str
) -> None:
    async with DroplineClient(live_server.url, ApiKeyCredentials(api_key)) as api:
        account = await api.me()
    assert account.credential_kind == "api_key"
    async with DroplineClient(live_server.url, ApiKeyCredentials(api_key[:-4] + "AAAA")) as api:
        with pytest.raises(AuthenticationError) as caught:
            await api.me()
    assert caught.value.problem_type == "invalid-token"


# -- against the real server's OAuth endpoints ------------------------------------------


def real_oauth(
    live: LiveServer, tokens: dict[str, Any], *, access: str | None, expires_at: float | None
) -> tuple[OAuthCredentials, Rotations]:
    rotations = Rotations()
    creds = OAuthCredentials(
        access,
        tokens["refresh_token"],
        live.url + "/oauth/token",
        "dropline-desktop",
        expires_at,
        rotations,
    )
    return creds, rotations


@pytest.mark.anyio
async def test_real_server_refresh_rotates_and_the_new_token_is_persisted(
    live_server: LiveServer, signed_in: dict[str, Any]
) -> None:
    creds, rotations = real_oauth(live_server, signed_in, access=None, expires_at=None)
    async with DroplineClient(live_server.url, creds) as api:
        account = await api.me()
        assert account.email == "carol@example.com"
        assert account.credential_kind != "api_key"
        assert len(rotations.calls) == 1
        new_refresh, _access, expires_at = rotations.calls[0]
        assert new_refresh != signed_in["refresh_token"]
        assert expires_at is not None
        # The persisted token is the live one: a later process signs in with it.
        later, later_rotations = real_oauth(
            live_server, {"refresh_token": new_refresh}, access=None, expires_at=None
        )
        async with DroplineClient(live_server.url, later) as again:
            assert (await again.me()).email == "carol@example.com"
        assert len(later_rotations.calls) == 1


@pytest.mark.anyio
async def test_real_server_401_is_healed_by_one_refresh(
    live_server: LiveServer, signed_in: dict[str, Any]
) -> None:
    # The clock says the token is good, the server says it is not.
    creds, rotations = real_oauth(
        live_server, signed_in, access="not-a-valid-token", expires_at=time.time() + 3600
    )
    async with DroplineClient(live_server.url, creds) as api:
        assert (await api.me()).email == "carol@example.com"
    assert len(rotations.calls) == 1


@pytest.mark.anyio
async def test_real_server_concurrent_requests_never_reuse_a_refresh_token(
    live_server: LiveServer, signed_in: dict[str, Any]
) -> None:
    # A reuse would revoke the whole sign-in on this server, failing every request.
    creds, rotations = real_oauth(
        live_server, signed_in, access=signed_in["access_token"], expires_at=time.time() - 1
    )
    async with DroplineClient(live_server.url, creds) as api:
        accounts = await asyncio.gather(*(api.me() for _ in range(6)))
        assert {a.email for a in accounts} == {"carol@example.com"}
        assert len(rotations.calls) == 1
        assert (await api.me()).email == "carol@example.com"


@pytest.mark.anyio
async def test_real_server_revoked_sign_in_is_an_authentication_error(
    live_server: LiveServer, signed_in: dict[str, Any]
) -> None:
    spend = refresh_grant(live_server.url, signed_in["refresh_token"])
    assert spend.status_code == 200
    # The SDK still holds the spent token (say, its store failed): reuse revokes all.
    creds, rotations = real_oauth(live_server, signed_in, access=None, expires_at=None)
    async with DroplineClient(live_server.url, creds) as api:
        with pytest.raises(AuthenticationError) as caught:
            await api.me()
    assert "Sign in again" in caught.value.message
    assert rotations.calls == []
