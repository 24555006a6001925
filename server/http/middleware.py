"""Pure ASGI middleware that gives every request an id and a source address.

``scope["state"]["request_id"]`` (also ``request.state.request_id`` and the
``X-Request-Id`` response header) ties audit rows, logs and error reports to one
request; ``scope["state"]["client_ip"]`` is the caller's address, taken from
``X-Forwarded-For`` only when the direct peer is a trusted proxy.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from contextvars import ContextVar

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dropline.server.guard.networks import Network, is_trusted, parse_networks

REQUEST_ID_HEADER = b"x-request-id"

current_request_id: ContextVar[str | None] = ContextVar("dropline_request_id", default=None)


def header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return bytes(value).decode("latin-1")
    return None


def client_ip(scope: Scope, trusted: tuple[Network, ...]) -> str | None:
    """The caller's address: the peer, or the nearest untrusted hop of X-Forwarded-For."""
    client = scope.get("client")
    peer = client[0] if client else None
    if not is_trusted(peer, trusted):
        return peer
    forwarded = header(scope, b"x-forwarded-for")
    if not forwarded:
        return peer
    # Walk from the right: each trusted proxy appended the address it saw; the
    # first untrusted one is the real client (anything left of it is client-made).
    for hop in reversed([h.strip() for h in forwarded.split(",") if h.strip()]):
        if not is_trusted(hop, trusted):
            return hop
    return peer


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp, trusted_proxies: Iterable[str] = ()) -> None:
        self.app = app
        self.trusted = parse_networks(trusted_proxies)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        request_id = uuid.uuid4().hex
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        state["client_ip"] = client_ip(scope, self.trusted)
        token = current_request_id.set(request_id)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((REQUEST_ID_HEADER, request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            current_request_id.reset(token)


__all__ = [
    "RequestContextMiddleware",
    "client_ip",
    "current_request_id",
]
