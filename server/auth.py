"""Request authentication: turns ``Authorization: Bearer ...`` into a :class:`Principal`.

Route modules depend on :func:`require` with the scope they need. Credential kinds
plug in through :data:`Authenticator` callables kept on ``app.state.authenticators``
(API keys now; OAuth JWTs and mTLS add theirs).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request

from server.identity import Principal
from server.problems import Problem

Authenticator = Callable[[Request, str], Principal | None]


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


def authenticate(request: Request) -> Principal:
    cached = getattr(request.state, "principal", None)
    if isinstance(cached, Principal):
        return cached
    token = _bearer(request)
    authenticators: list[Authenticator] = request.app.state.authenticators
    for authenticator in authenticators:
        principal = authenticator(request, token)
        if principal is not None:
            request.state.principal = principal
            return principal
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
