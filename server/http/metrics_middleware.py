"""Pure ASGI middleware that measures every request into
:class:`~dropline.server.metrics.Metrics`."""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dropline.server.metrics import Metrics

UNMATCHED = "<unmatched>"
LONG_POLL_PATH = "/api/v1/changes/wait"


def _is_upload(method: str, path: str) -> bool:
    return path.startswith("/api/v1/uploads") and method in ("POST", "PATCH")


def _is_download(method: str, path: str) -> bool:
    if method != "GET":
        return False
    if path.startswith("/s/"):
        return "/files/" in path  # a share's file, not its listing
    return path.startswith("/api/v1/files/") and path.endswith("/content")


class MetricsMiddleware:
    """Counts and times every HTTP request by its route template (``/api/v1/files/{entry_id}``,
    never the raw path, so ids cannot explode the label set) and counts body bytes."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        m = self.metrics
        method: str = scope["method"]
        path: str = scope["path"]
        status = 500
        counting_upload = _is_upload(method, path)
        counting_download = _is_download(method, path)
        longpoll = path == LONG_POLL_PATH
        started = time.perf_counter()

        async def receive_counted() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                m.upload_bytes.inc(len(message.get("body", b"")))
            return message

        async def send_counted(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            elif counting_download and message["type"] == "http.response.body" and status < 300:
                m.download_bytes.inc(len(message.get("body", b"")))
            await send(message)

        if longpoll:
            m.longpolls.inc()
        try:
            await self.app(scope, receive_counted if counting_upload else receive, send_counted)
        finally:
            if longpoll:
                m.longpolls.dec()
            route = scope.get("route")
            template = getattr(route, "path", None) or UNMATCHED
            m.requests.labels(method, template, str(status)).inc()
            m.latency.labels(method, template).observe(time.perf_counter() - started)
