"""Request authentication: turns ``Authorization: Bearer ...`` (or, with no such header,
the web client's session cookie) into a :class:`Principal`.

Route modules depend on :func:`require` with the scope they need. Credential kinds
plug in through :data:`Authenticator` callables kept on ``app.state.authenticators``
(API keys, OAuth JWTs); client certificates, failure handling, per-request policy
and rate limits come from ``app.state.security`` (dropline.server.guard.security).
A cookie is sent by the browser on its own, so a cookie-authenticated request that
changes anything must also carry ``X-CSRF-Token``, which only the page itself knows.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request

from dropline.server.identity import web_sessions
from dropline.server.identity.accounts import Principal
from dropline.server.identity.oauth.csrf import Csrf
from dropline.server.problems import Problem

Authenticator = Callable[[Request, str], Principal | None]

CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
WEB_CLIENT_LABEL = "web"


def _bearer(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Problem(
            "unauthenticated",
            "send 'Authorization: Bearer <API key or access token>'",
            headers={"WWW-Authenticate": 'Bearer realm="dropline"'},
        )
    return token.strip()


CLIENT_LABEL_MAX = 120


def client_label(request: Request, kind: str) -> str:
    """The caller's product as its User-Agent names it first (``dropline-agent/0.1.0``),
    or the credential kind when it sends none."""
    product = request.headers.get("user-agent", "").strip().split(" ", 1)[0]
    return product[:CLIENT_LABEL_MAX] if product else kind


def _accept(request: Request, principal: Principal) -> Principal:
    if principal.client is None:
        principal = dataclasses.replace(principal, client=client_label(request, principal.kind))
    security = getattr(request.app.state, "security", None)
    if security is not None:
        # Per-request policy (source address, hours) and the credential's rate limit.
        security.after_authenticate(request, principal)
    request.state.principal = principal
    return principal


def _session_principal(request: Request, session_id: str) -> Principal:
    """The person behind a web session cookie; state-changing methods need the CSRF header."""
    session = web_sessions.WebSessions(request.app.state.db).lookup(session_id)
    if session is None:
        raise Problem("invalid-token", "your web session has ended: sign in again")
    if request.method not in SAFE_METHODS:
        csrf: Csrf = request.app.state.csrf
        subject = web_sessions.csrf_subject(session_id)
        if not csrf.check(subject, request.headers.get(CSRF_HEADER)):
            raise Problem(
                "forbidden",
                "this request came with the web session cookie but without the page's "
                "X-CSRF-Token header, so it was refused",
            )
    return Principal(
        tenant_id=session.tenant_id,
        user_id=session.user_id,
        credential_id=session.grant_id or session.id_hash,
        kind="web",
        scopes=session.scopes,
        client=WEB_CLIENT_LABEL,
    )


def authenticate(request: Request) -> Principal:
    cached = getattr(request.state, "principal", None)
    if isinstance(cached, Principal):
        return cached
    security = getattr(request.app.state, "security", None)
    if security is not None and "authorization" not in request.headers:
        # Mutual TLS: a verified client certificate mapped to a service principal.
        by_certificate = security.certificate_principal(request)
        if by_certificate is not None:
            return _accept(request, by_certificate)
    if "authorization" not in request.headers:
        session_id = request.cookies.get(web_sessions.COOKIE)
        if session_id:
            return _accept(request, _session_principal(request, session_id))
    token = _bearer(request)
    authenticators: list[Authenticator] = request.app.state.authenticators
    for authenticator in authenticators:
        principal = authenticator(request, token)
        if principal is not None:
            return _accept(request, principal)
    if security is not None:
        # Audit row, auth.failed event, and a strike towards a ban for the address.
        security.on_auth_failure(request, "unknown, expired or revoked credential")
    raise Problem(
        "invalid-token",
        "the credential is unknown, expired or revoked",
        headers={"WWW-Authenticate": 'Bearer realm="dropline", error="invalid_token"'},
    )


def require(*scopes: str) -> Callable[[Request], Principal]:
    """A dependency that authenticates and checks every scope in ``scopes``."""

    def dependency(request: Request) -> Principal:
        principal = authenticate(request)
        missing = [s for s in scopes if s not in principal.scopes]
        if missing:
            raise Problem(
                "insufficient-scope",
                f"this operation needs the scope(s): {' '.join(missing)}",
                headers={
                    "WWW-Authenticate": (
                        f'Bearer realm="dropline", error="insufficient_scope", '
                        f'scope="{" ".join(scopes)}"'
                    )
                },
            )
        return principal

    return dependency


ReadPrincipal = Annotated[Principal, Depends(require("files:read"))]
WritePrincipal = Annotated[Principal, Depends(require("files:write"))]
AnyPrincipal = Annotated[Principal, Depends(authenticate)]
