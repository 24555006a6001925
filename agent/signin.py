"""Signing the agent in: OAuth 2.0 authorization code with PKCE over a loopback redirect
(RFC 7636, RFC 8252), the device flow (RFC 8628), and signing out: revocation (RFC 7009)
and clearing the keyring.

Built on httpx directly rather than Authlib's client: Authlib's httpx integration
emits a deprecation warning on plain httpx (it prefers a fork), which would fail
our warnings-as-errors test runs, and each flow here is a couple of form POSTs.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import html
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx

from dropline.agent.control import protocol as p
from dropline.agent.credentials import CredentialStore

log = logging.getLogger(__name__)

CLIENT_ID = "dropline-desktop"
SCOPE = "files:read files:write"
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
CALLBACK_PATH = "/callback"

DONE_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>Dropline</title>
<style>body{{font-family:system-ui,sans-serif;margin:4em auto;max-width:32em;color:#222}}</style>
</head><body><h1>{title}</h1><p>{text}</p></body></html>"""


class SignInError(Exception):
    """Sign-in did not complete; the message is ready for the user."""


@dataclass(frozen=True, slots=True)
class Tokens:
    access_token: str
    refresh_token: str
    expires_in: float | None
    scope: str | None

    def __repr__(self) -> str:
        return f"Tokens(expires_in={self.expires_in!r}, scope={self.scope!r}, tokens=<hidden>)"


@dataclass(frozen=True, slots=True)
class Endpoints:
    authorize: str
    token: str
    device: str
    revoke: str

    @classmethod
    def defaults(cls, server_url: str) -> Endpoints:
        base = server_url.rstrip("/")
        return cls(
            f"{base}/oauth/authorize",
            f"{base}/oauth/token",
            f"{base}/oauth/device_authorization",
            f"{base}/oauth/revoke",
        )


async def discover(http: httpx.AsyncClient, server_url: str) -> Endpoints:
    """Endpoints from the server's RFC 8414 metadata, or the documented defaults."""
    fallback = Endpoints.defaults(server_url)
    try:
        resp = await http.get(f"{server_url.rstrip('/')}/.well-known/oauth-authorization-server")
        doc = resp.json() if resp.status_code == 200 else {}
    except (httpx.HTTPError, ValueError):
        doc = {}
    if not isinstance(doc, dict):
        doc = {}

    def pick(name: str, default: str) -> str:
        value = doc.get(name)
        return (
            value
            if isinstance(value, str) and value.startswith(("http://", "https://"))
            else default
        )

    return Endpoints(
        pick("authorization_endpoint", fallback.authorize),
        pick("token_endpoint", fallback.token),
        pick("device_authorization_endpoint", fallback.device),
        pick("revocation_endpoint", fallback.revoke),
    )


def pkce_pair() -> tuple[str, str]:
    """(verifier, S256 challenge); the verifier is 86 characters of the unreserved set."""
    verifier = secrets.token_urlsafe(64)
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _tokens(doc: dict[str, Any]) -> Tokens:
    access, refresh = doc.get("access_token"), doc.get("refresh_token")
    if not isinstance(access, str) or not isinstance(refresh, str) or not access or not refresh:
        raise SignInError("the server's token response had no access or refresh token")
    expires = doc.get("expires_in")
    return Tokens(
        access,
        refresh,
        float(expires)
        if isinstance(expires, int | float) and not isinstance(expires, bool)
        else None,
        doc.get("scope") if isinstance(doc.get("scope"), str) else None,
    )


def _json(resp: httpx.Response) -> dict[str, Any]:
    try:
        doc = resp.json()
    except ValueError:
        return {}
    return doc if isinstance(doc, dict) else {}


async def _token_request(http: httpx.AsyncClient, url: str, form: dict[str, str]) -> httpx.Response:
    try:
        return await http.post(url, data=form, headers={"Accept": "application/json"})
    except httpx.HTTPError as exc:
        raise SignInError(f"could not reach the sign-in server: {type(exc).__name__}") from None


class _Callback:
    """The loopback redirect target: one HTTP GET carrying ``code`` and ``state``.

    A few lines of asyncio rather than http.server: the standard server is blocking
    and would need a thread, and only a single request line is read here.
    """

    def __init__(self, expected_state: str) -> None:
        self.expected_state = expected_state
        self.result: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._on_request, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None

    async def _on_request(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), 10)
            while (await asyncio.wait_for(reader.readline(), 10)) not in (b"\r\n", b"\n", b""):
                pass
            parts = line.decode("latin-1").split()
            target = urlsplit(parts[1]) if len(parts) >= 2 else urlsplit("/")
            if target.path != CALLBACK_PATH:
                await self._reply(writer, 404, "Not found", "This address is not in use.")
                return
            query = {k: v[0] for k, v in parse_qs(target.query).items()}
            if query.get("state") != self.expected_state:
                # Not our request (or forged): ignore it, keep waiting for the real one.
                await self._reply(writer, 400, "Sign-in failed", "This sign-in link is not valid.")
                return
            if "error" in query:
                await self._reply(writer, 200, "Sign-in cancelled", "You can close this tab.")
                if not self.result.done():
                    self.result.set_exception(
                        SignInError(f"the server refused the sign-in: {query['error']}")
                    )
                return
            code = query.get("code")
            if not code:
                await self._reply(writer, 400, "Sign-in failed", "The server sent no code.")
                return
            await self._reply(
                writer,
                200,
                "Signed in to Dropline",
                "You can close this tab and return to Dropline.",
            )
            if not self.result.done():
                self.result.set_result(code)
        except (TimeoutError, ConnectionError, UnicodeDecodeError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    @staticmethod
    async def _reply(writer: asyncio.StreamWriter, status: int, title: str, text: str) -> None:
        body = DONE_PAGE.format(title=html.escape(title), text=html.escape(text)).encode()
        reason = {200: "OK", 400: "Bad Request", 404: "Not Found"}[status]
        head = (
            f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/html; charset=utf-8\r\n"
            f"Content-Length: {len(body)}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n"
        )
        writer.write(head.encode("ascii") + body)
        await writer.drain()


class BrowserSignIn:
    """Authorization code + PKCE: :meth:`start` gives the URL to open, :meth:`finish` the tokens."""

    def __init__(self, http: httpx.AsyncClient, server_url: str, scope: str = SCOPE) -> None:
        self.http = http
        self.server_url = server_url
        self.scope = scope
        self._verifier, self._challenge = pkce_pair()
        self._state = secrets.token_urlsafe(24)
        self._callback: _Callback | None = None
        self._endpoints: Endpoints | None = None
        self.redirect_uri = ""

    async def start(self) -> str:
        self._endpoints = await discover(self.http, self.server_url)
        self._callback = _Callback(self._state)
        await self._callback.start()
        self.redirect_uri = f"http://127.0.0.1:{self._callback.port}{CALLBACK_PATH}"
        query = urlencode(
            {
                "response_type": "code",
                "client_id": CLIENT_ID,
                "redirect_uri": self.redirect_uri,
                "code_challenge": self._challenge,
                "code_challenge_method": "S256",
                "state": self._state,
                "scope": self.scope,
            }
        )
        return f"{self._endpoints.authorize}?{query}"

    async def finish(self, timeout: float = 600) -> Tokens:
        assert self._callback is not None and self._endpoints is not None, "call start() first"
        try:
            code = await asyncio.wait_for(asyncio.shield(self._callback.result), timeout)
        except TimeoutError:
            raise SignInError("the sign-in was not completed in the browser in time") from None
        finally:
            await self._callback.close()
        resp = await _token_request(
            self.http,
            self._endpoints.token,
            {
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": self.redirect_uri,
                "client_id": CLIENT_ID,
                "code_verifier": self._verifier,
            },
        )
        if resp.status_code != 200:
            error = _json(resp).get("error", f"HTTP {resp.status_code}")
            raise SignInError(f"the server refused the sign-in code ({error})")
        return _tokens(_json(resp))

    async def cancel(self) -> None:
        if self._callback is not None:
            await self._callback.close()


@dataclass(frozen=True, slots=True)
class DeviceCode:
    device_code: str
    user_code: str
    verification_uri: str
    verification_uri_complete: str | None
    expires_in: float
    interval: float

    def __repr__(self) -> str:
        return (
            f"DeviceCode(user_code={self.user_code!r}, verification_uri={self.verification_uri!r})"
        )


class DeviceSignIn:
    """RFC 8628: :meth:`start` gets the code to show; :meth:`finish` polls until approved."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        server_url: str,
        scope: str = SCOPE,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.http = http
        self.server_url = server_url
        self.scope = scope
        self._sleep = sleep
        self._endpoints: Endpoints | None = None
        self.code: DeviceCode | None = None

    async def start(self) -> DeviceCode:
        self._endpoints = await discover(self.http, self.server_url)
        resp = await _token_request(
            self.http, self._endpoints.device, {"client_id": CLIENT_ID, "scope": self.scope}
        )
        doc = _json(resp)
        if resp.status_code != 200:
            raise SignInError(
                f"the server refused device sign-in ({doc.get('error', resp.status_code)})"
            )
        try:
            self.code = DeviceCode(
                device_code=str(doc["device_code"]),
                user_code=str(doc["user_code"]),
                verification_uri=str(doc["verification_uri"]),
                verification_uri_complete=doc.get("verification_uri_complete"),
                expires_in=float(doc.get("expires_in", 600)),
                interval=float(doc.get("interval", 5)),
            )
        except (KeyError, TypeError, ValueError):
            raise SignInError("the server's device authorization response is incomplete") from None
        return self.code

    async def finish(self) -> Tokens:
        assert self.code is not None and self._endpoints is not None, "call start() first"
        interval = max(self.code.interval, 1.0)
        waited = 0.0
        while waited < self.code.expires_in:
            await self._sleep(interval)
            waited += interval
            resp = await _token_request(
                self.http,
                self._endpoints.token,
                {
                    "grant_type": DEVICE_GRANT,
                    "device_code": self.code.device_code,
                    "client_id": CLIENT_ID,
                },
            )
            doc = _json(resp)
            if resp.status_code == 200:
                return _tokens(doc)
            error = doc.get("error")
            if error == "authorization_pending":
                continue
            if error == "slow_down":
                interval += 5  # RFC 8628 section 3.5
                continue
            if error == "expired_token":
                raise SignInError("the code expired before it was entered; start again")
            if error == "access_denied":
                raise SignInError("the sign-in was refused in the browser")
            raise SignInError(f"the server refused device sign-in ({error or resp.status_code})")
        raise SignInError("the code expired before it was entered; start again")


async def revoke(http: httpx.AsyncClient, server_url: str, token: str, hint: str) -> bool:
    """Revoke ``token`` at the server (RFC 7009); True when the server confirmed."""
    endpoints = await discover(http, server_url)
    try:
        resp = await http.post(
            endpoints.revoke,
            data={"token": token, "token_type_hint": hint, "client_id": CLIENT_ID},
        )
    except httpx.HTTPError as exc:
        log.warning("could not reach the server to revoke the sign-in: %s", type(exc).__name__)
        return False
    return resp.status_code == 200


async def sign_out(store: CredentialStore, url: str) -> None:
    """Revoke the stored OAuth sign-in at the server (RFC 7009) and clear the keyring."""
    cred = store.load()
    if cred is not None and cred.source == "env":
        raise p.ControlError(
            p.INVALID,
            "the agent uses DROPLINE_API_KEY from its environment; remove it there to sign out",
        )
    refresh = store.refresh_token()
    if refresh:
        async with httpx.AsyncClient(timeout=30.0) as http:
            if not await revoke(http, url, refresh, "refresh_token"):
                log.warning(
                    "the server did not confirm the revocation; the keyring is cleared anyway"
                )
    store.clear()
    log.info("signed out")
