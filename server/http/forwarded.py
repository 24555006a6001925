"""The scheme a trusted proxy saw: ``X-Forwarded-Proto`` from a peer in
``DROPLINE_TRUSTED_PROXIES`` sets the request's scheme (secure cookies, derived URLs).
Anyone else's header is ignored. ``X-Forwarded-For`` is ``middleware.client_ip``'s job."""

from __future__ import annotations

from collections.abc import Iterable

from starlette.types import ASGIApp, Receive, Scope, Send

from dropline.server.guard.networks import is_trusted, parse_networks
from dropline.server.http.middleware import header


class ForwardedScheme:
    def __init__(self, app: ASGIApp, trusted_proxies: Iterable[str]) -> None:
        self.app = app
        self.trusted = parse_networks(trusted_proxies)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket") and self.trusted:
            client = scope.get("client")
            if is_trusted(client[0] if client else None, self.trusted):
                proto = (header(scope, b"x-forwarded-proto") or "").strip().lower()
                if proto in ("http", "https"):
                    if scope["type"] == "websocket":
                        proto = "wss" if proto == "https" else "ws"
                    scope = {**scope, "scheme": proto}
        await self.app(scope, receive, send)


__all__ = ["ForwardedScheme"]
