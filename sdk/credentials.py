"""How the SDK proves who it is: an API key, or OAuth tokens that refresh themselves.

Both are ``httpx.Auth`` flows. OAuth refreshes shortly before the access token
expires and once more on a 401, and hands every rotated refresh token to
``on_rotate`` so the caller can persist it (the server spends the old one).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncGenerator, Callable, Generator
from typing import Any

import anyio
import httpx

from dropline.sdk.errors import AuthenticationError, ProtocolError, ServerError, UnavailableError

log = logging.getLogger(__name__)

# refresh_token, access_token, expires_at (epoch seconds, or None if the server gave no expiry)
OnRotate = Callable[[str, str, float | None], None]


class ApiKeyCredentials(httpx.Auth):
    """A long-lived API key (``dlk_...``), sent as a bearer token."""

    def __init__(self, key: str) -> None:
        if not key or key != key.strip():
            raise ValueError("the API key is empty or has surrounding whitespace")
        self._key = key

    def __repr__(self) -> str:
        return "ApiKeyCredentials(key=<hidden>)"

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self._key}"
        yield request


class OAuthCredentials(httpx.Auth):
    """OAuth 2.0 bearer tokens with automatic refresh (``grant_type=refresh_token``).

    ``on_rotate(refresh_token, access_token, expires_at)`` is called after every
    refresh, before the new access token is used; persist at least the refresh
    token there. Refreshes are serialised so concurrent requests never present the
    same refresh token twice (the server would revoke the whole sign-in).
    """

    def __init__(
        self,
        access_token: str | None,
        refresh_token: str,
        token_url: str,
        client_id: str,
        expires_at: float | None = None,
        on_rotate: OnRotate | None = None,
        *,
        client_secret: str | None = None,
        refresh_margin: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not refresh_token:
            raise ValueError("a refresh token is required")
        self._access_token = access_token
        self._refresh_token = refresh_token
        self.token_url = token_url
        self.client_id = client_id
        self._client_secret = client_secret
        self.expires_at = expires_at
        self._on_rotate = on_rotate
        self.refresh_margin = refresh_margin
        self._clock = clock
        self._lock = anyio.Lock()
        self.refresh_count = 0

    def __repr__(self) -> str:
        return (
            f"OAuthCredentials(client_id={self.client_id!r}, token_url={self.token_url!r}, "
            f"expires_at={self.expires_at!r}, tokens=<hidden>)"
        )

    def _stale(self) -> bool:
        if self._access_token is None:
            return True
        if self.expires_at is None:
            return False
        return self._clock() >= self.expires_at - self.refresh_margin

    def _refresh_request(self) -> httpx.Request:
        form = {
            "grant_type": "refresh_token",
            "refresh_token": self._refresh_token,
            "client_id": self.client_id,
        }
        if self._client_secret is not None:
            form["client_secret"] = self._client_secret
        return httpx.Request(
            "POST", self.token_url, data=form, headers={"Accept": "application/json"}
        )

    def _apply_token_response(self, response: httpx.Response) -> None:
        doc = _json_object(response)
        if response.status_code != 200:
            error = doc.get("error")
            if response.status_code in (400, 401) and error in (
                "invalid_grant",
                "invalid_client",
                "unauthorized_client",
            ):
                raise AuthenticationError(
                    "The sign-in expired or was revoked. Sign in again.",
                    status=response.status_code,
                    problem={"error": error},
                )
            if response.status_code >= 500 or response.status_code == 429:
                cls = ServerError if response.status_code == 500 else UnavailableError
                raise cls(
                    f"The sign-in server answered HTTP {response.status_code}.",
                    status=response.status_code,
                )
            reason = error or f"HTTP {response.status_code}"
            raise AuthenticationError(
                f"The sign-in server refused to refresh the token ({reason}).",
                status=response.status_code,
            )
        access = doc.get("access_token")
        if not isinstance(access, str) or not access:
            raise ProtocolError("the token response has no access_token")
        token_type = doc.get("token_type", "Bearer")
        if not isinstance(token_type, str) or token_type.lower() != "bearer":
            raise ProtocolError(f"the token response has token_type {token_type!r}, not Bearer")
        refresh = doc.get("refresh_token")
        expires_in = doc.get("expires_in")
        self._access_token = access
        if isinstance(refresh, str) and refresh:
            self._refresh_token = refresh
        self.expires_at = (
            self._clock() + float(expires_in)
            if isinstance(expires_in, int | float) and not isinstance(expires_in, bool)
            else None
        )
        self.refresh_count += 1
        log.info("access token refreshed (expires in %s s)", expires_in)
        if self._on_rotate is not None:
            try:
                self._on_rotate(self._refresh_token, self._access_token, self.expires_at)
            except Exception:
                # The new tokens still work in this process; the caller's store failed.
                log.exception("could not persist the rotated refresh token")

    def sync_auth_flow(
        self, request: httpx.Request
    ) -> Generator[httpx.Request, httpx.Response, None]:
        raise RuntimeError("OAuthCredentials works with httpx.AsyncClient (DroplineClient)")

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        refreshed = False
        if self._stale():
            async with self._lock:
                if self._stale():  # another request may have refreshed while this one waited
                    token_response = yield self._refresh_request()
                    await token_response.aread()
                    self._apply_token_response(token_response)
                    refreshed = True
        sent_with = self._access_token
        request.headers["Authorization"] = f"Bearer {sent_with}"
        response = yield request
        if response.status_code != 401 or refreshed:
            return
        # Revoked or expired early: refresh once and send the request again.
        async with self._lock:
            if self._access_token == sent_with:
                token_response = yield self._refresh_request()
                await token_response.aread()
                self._apply_token_response(token_response)
        request.headers["Authorization"] = f"Bearer {self._access_token}"
        yield request


def _json_object(response: httpx.Response) -> dict[str, Any]:
    try:
        doc = json.loads(response.content)
    except (ValueError, UnicodeDecodeError):
        return {}
    return doc if isinstance(doc, dict) else {}
