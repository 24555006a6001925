"""The web client's sign-in: the server runs the OAuth authorization code + PKCE flow for
the browser (as the first-party client ``dropline-web``), then keeps the result in a
session cookie. No token ever reaches the page or a URL.

The state and the PKCE verifier wait in a short-lived HttpOnly cookie, signed with the
server's CSRF secret, between ``/web/login`` and ``/web/callback``. The access token
the exchange yields is only read for its sign-in (grant) and thrown away: the web
session is tied to that grant, so revoking the sign-in ends the session.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from dropline.server.guard.security import Security
from dropline.server.identity.oauth.csrf import Csrf
from dropline.server.identity.oauth.server import (
    OAuthRequest,
    audience,
    current_issuer,
    web_redirect_uri,
)
from dropline.server.identity.oauth.store import USER_SCOPES, WEB_CLIENT
from dropline.server.identity.tokens import AccessClaims, InvalidToken

LOGIN_COOKIE = "dl_web_login"
LOGIN_SECONDS = 600
WEB_SCOPE = " ".join(USER_SCOPES)


class SignInFailed(Exception):
    """A message fit to show on the page."""


@dataclass(frozen=True, slots=True)
class LoginStart:
    authorize_url: str
    cookie: str


def _challenge(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _seal(csrf: Csrf, state: str, verifier: str) -> str:
    return f"{state}.{verifier}.{csrf.token_for('web-login:' + state + '.' + verifier)}"


def start(csrf: Csrf, issuer: str) -> LoginStart:
    """Where to send the browser to sign in, and the cookie that remembers this attempt."""
    state = secrets.token_urlsafe(24)
    verifier = secrets.token_urlsafe(48)
    query = urlencode(
        {
            "response_type": "code",
            "client_id": WEB_CLIENT,
            "redirect_uri": web_redirect_uri(issuer),
            "scope": WEB_SCOPE,
            "state": state,
            "code_challenge": _challenge(verifier),
            "code_challenge_method": "S256",
        }
    )
    return LoginStart(f"{issuer}/oauth/authorize?{query}", _seal(csrf, state, verifier))


def verifier_for(csrf: Csrf, cookie: str | None, state: str) -> str | None:
    """The PKCE verifier of the attempt ``state`` names, if this browser started it."""
    if not cookie or not state:
        return None
    parts = cookie.split(".")
    if len(parts) != 3:
        return None
    saved_state, verifier, _mac = parts
    if not hmac.compare_digest(_seal(csrf, saved_state, verifier), cookie):
        return None
    if not hmac.compare_digest(saved_state, state):
        return None
    return verifier


async def exchange(
    request: Request, security: Security, issuer: str, code: str, verifier: str
) -> AccessClaims:
    """Spend the authorization code at the token endpoint's own code (no HTTP round
    trip); returns the claims of the access token, which name the new sign-in."""
    form = [
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", web_redirect_uri(issuer)),
        ("client_id", WEB_CLIENT),
        ("code_verifier", verifier),
    ]
    oreq = OAuthRequest(
        "POST", issuer + "/oauth/token", {}, [], form, security.audit_context(request)
    )

    def run() -> tuple[int, Any, list[tuple[str, str]]]:
        current_issuer.set(issuer)
        result: tuple[int, Any, list[tuple[str, str]]] = security.oauth.create_token_response(oreq)
        return result

    status, body, _headers = await run_in_threadpool(run)
    if status != 200 or not isinstance(body, dict) or "access_token" not in body:
        reason = body.get("error_description") if isinstance(body, dict) else None
        raise SignInFailed(reason or "the sign-in could not be completed")
    try:
        return security.tokens.verify(
            body["access_token"], issuer=issuer, audience=audience(issuer)
        )
    except InvalidToken as exc:  # not expected: the token was minted a moment ago
        raise SignInFailed("the sign-in could not be completed") from exc


__all__ = ["LOGIN_COOKIE", "LOGIN_SECONDS", "LoginStart", "SignInFailed", "exchange", "start"]
