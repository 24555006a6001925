"""The agent's logging: rotating files (text or JSON lines), optional console, secrets redacted.

Handlers are installed only here, by the entry points. Every handler carries
:class:`RedactFilter` and formats through a redacting formatter, so a token that
slips into a message, an argument or a traceback never reaches a file.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import re
import sys
import time
from pathlib import Path
from typing import Any

LOG_FILE = "agent.log"
MAX_BYTES = 10 * 1024 * 1024
BACKUPS = 5
REDACTED = "[redacted]"

_PATTERNS = [
    # API keys, JWTs, bearer headers.
    re.compile(r"dlk_[A-Za-z0-9_\-]{6,}"),
    re.compile(r"eyJ[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]*"),
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=\-]+"),
    # key=value in forms, URLs and reprs; "key": "value" in JSON.
    re.compile(
        r"(?i)((?:access_token|refresh_token|id_token|device_code|code_verifier|client_secret"
        r"|password|api_key|token|code)=)[^&\s'\"]+"
    ),
    re.compile(
        r"(?i)(\"(?:access_token|refresh_token|id_token|device_code|code_verifier|client_secret"
        r"|password|api_key|token|code)\"\s*:\s*\")[^\"]*"
    ),
]


def redact(text: str) -> str:
    for pattern in _PATTERNS:
        if pattern.groups:
            text = pattern.sub(lambda m: m.group(1) + REDACTED, text)
        else:
            text = pattern.sub(REDACTED, text)
    return text


class RedactFilter(logging.Filter):
    """Rewrites the record's message with secrets replaced (arguments included)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: keep the raw text, still redacted
            message = str(record.msg)
        record.msg = redact(message)
        record.args = None
        return True


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and the exception if any."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return redact(json.dumps(doc, ensure_ascii=False))


def setup(
    log_dir: Path | None,
    *,
    json_lines: bool = False,
    verbose: bool = False,
    level: int = logging.INFO,
) -> Path | None:
    """Install the agent's handlers on the root logger; returns the log file, if any."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_dropline", False):
            root.removeHandler(handler)
            handler.close()
    root.setLevel(logging.DEBUG if verbose else level)
    path: Path | None = None
    if log_dir is not None:
        log_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = log_dir / LOG_FILE
        file_handler = logging.handlers.RotatingFileHandler(
            path, maxBytes=MAX_BYTES, backupCount=BACKUPS, encoding="utf-8"
        )
        _install(root, file_handler, JsonFormatter() if json_lines else TextFormatter())
        path.chmod(0o600)
    if verbose:
        _install(root, logging.StreamHandler(sys.stderr), TextFormatter())
    # Quiet libraries that log every request at INFO.
    for noisy in ("httpx", "httpcore", "watchdog"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return path


def _install(root: logging.Logger, handler: logging.Handler, fmt: logging.Formatter) -> None:
    handler.setFormatter(fmt)
    handler.addFilter(RedactFilter())
    handler._dropline = True  # type: ignore[attr-defined]
    root.addHandler(handler)
