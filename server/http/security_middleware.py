"""The security gate in front of every route: banned addresses are turned away,
sign-in endpoints are rate-limited per address, and each request carries the facts
(:class:`~dropline.server.guard.security.RequestFacts`) that file hooks and deferred
denial audits read."""

from __future__ import annotations

import json

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dropline.server.guard.security import (
    SIGN_IN_PREFIXES,
    UNGUARDED,
    RequestFacts,
    Security,
    request_facts,
)
from dropline.server.problems import PROBLEM_BASE


class SecurityMiddleware:
    """Turns banned addresses away (429 + Retry-After), rate-limits sign-in endpoints, and
    keeps the request facts that file hooks and deferred denial audits use."""

    def __init__(self, app: ASGIApp, security: Security) -> None:
        self.app = app
        self.security = security

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in UNGUARDED:
            await self.app(scope, receive, send)
            return
        state = scope.get("state") or {}
        ip = state.get("client_ip") or (scope.get("client") or (None,))[0]
        banned = self.security.defender.banned_for(ip)
        if banned:
            await _problem(
                send,
                429,
                "banned",
                "Too many failed sign-ins",
                "too many failed authentications from this address; try again later",
                {"Retry-After": str(banned)},
            )
            return
        if ip and scope["path"].startswith(SIGN_IN_PREFIXES):
            decision = self.security.limiter.hit("ip", ip)
            if not decision.allowed:
                await _problem(
                    send,
                    429,
                    "rate-limited",
                    "Too many requests",
                    f"more than {decision.limit} requests in {decision.window} s from this address",
                    decision.headers(),
                )
                return
        facts = RequestFacts(
            request_id=state.get("request_id"),
            client_ip=ip,
            method=scope.get("method", "GET"),
            via_mtls=self.security.presented_certificate(Request(scope)) is not None,
        )
        token = request_facts.set(facts)

        async def flush() -> None:
            if facts.pending:
                writes, facts.pending = facts.pending, []
                await run_in_threadpool(self.security.write_all, writes)

        async def send_after_audit(message: Message) -> None:
            if message["type"] == "http.response.start":
                await flush()
                extra = state.get("ratelimit_headers")
                if extra:
                    headers = list(message.get("headers", []))
                    present = {k.lower() for k, _ in headers}
                    headers += [
                        (k.lower().encode(), v.encode())
                        for k, v in extra.items()
                        if k.lower().encode() not in present
                    ]
                    message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_after_audit)
        finally:
            await flush()
            request_facts.reset(token)


async def _problem(
    send: Send, status: int, slug: str, title: str, detail: str, headers: dict[str, str]
) -> None:
    body = json.dumps(
        {"type": PROBLEM_BASE + slug, "title": title, "status": status, "detail": detail}
    ).encode()
    raw = [
        (b"content-type", b"application/problem+json"),
        (b"content-length", str(len(body)).encode()),
    ]
    raw += [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})
