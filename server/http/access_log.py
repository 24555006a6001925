"""Structured access logs: a pure ASGI middleware writing one record per request to the
``dropline.server.access`` logger, and the formatter that prints records as JSON lines.

Each record carries the request id (set by :mod:`dropline.server.http.middleware`, returned as
``X-Request-Id`` and written to audit rows), so a log line, an error report and an
audit row of one request can be joined. Share-link tokens are masked in the path,
and no query string, header value or body is logged.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from datetime import UTC, datetime
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

ACCESS_LOGGER = "dropline.server.access"
log = logging.getLogger(ACCESS_LOGGER)

# A share link's token is its credential: never write it down.
_SHARE_TOKEN = re.compile(r"^/s/[^/]+")
# The standard attributes of a LogRecord; anything else was passed in ``extra``.
_RECORD_FIELDS = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


def safe_path(path: str) -> str:
    return _SHARE_TOKEN.sub("/s/***", path)


class AccessLogMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        sent = 0

        async def send_logged(message: Message) -> None:
            nonlocal status, sent
            if message["type"] == "http.response.start":
                status = int(message["status"])
            elif message["type"] == "http.response.body":
                sent += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, send_logged)
        finally:
            if log.isEnabledFor(logging.INFO):
                log.info(
                    "%s %s %s",
                    scope["method"],
                    safe_path(scope["path"]),
                    status,
                    extra=self._fields(scope, status, sent, started),
                )

    @staticmethod
    def _fields(scope: Scope, status: int, sent: int, started: float) -> dict[str, Any]:
        state = scope.get("state") or {}
        principal = state.get("principal")
        client = scope.get("client")
        route = scope.get("route")
        return {
            "request_id": state.get("request_id"),
            "method": scope["method"],
            "path": safe_path(scope["path"]),
            "route": getattr(route, "path", None),
            "status": status,
            "duration_ms": round((time.perf_counter() - started) * 1000, 3),
            "bytes_sent": sent,
            "client_ip": state.get("client_ip") or (client[0] if client else None),
            "tenant_id": getattr(principal, "tenant_id", None),
            "user_id": getattr(principal, "user_id", None),
            "credential_id": getattr(principal, "credential_id", None),
        }


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and every ``extra`` field.

    Written here rather than taken from python-json-logger: it is one ``json.dumps`` of
    the record's own fields, and a dependency would add nothing to that.
    """

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, tz=UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _RECORD_FIELDS and not key.startswith("_"):
                doc[key] = value
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """Plain lines for people, with the request id and timing at the end."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extras = getattr(record, "request_id", None), getattr(record, "duration_ms", None)
        if extras[0] is not None:
            line += f" request_id={extras[0]} duration_ms={extras[1]}"
        return line


def configure(log_format: str = "text", level: str = "info", *, access_log: bool = True) -> None:
    """Install the process's log handler (an entry point calls this once). ``json`` makes
    every record, access or not, one JSON line on stderr. Access records are written at
    ``info``, so ``level="warning"`` (or ``access_log=False``) leaves them out."""
    if log_format not in ("text", "json"):
        raise ValueError(f"log format must be 'text' or 'json', not {log_format!r}")
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    logging.getLogger(ACCESS_LOGGER).setLevel(logging.INFO if access_log else logging.WARNING)
    if not access_log:
        return
    if logging.getLevelName(level.upper()) > logging.INFO:
        logging.getLogger(ACCESS_LOGGER).setLevel(logging.WARNING)


__all__ = [
    "ACCESS_LOGGER",
    "AccessLogMiddleware",
    "JsonFormatter",
    "TextFormatter",
    "configure",
    "safe_path",
]
