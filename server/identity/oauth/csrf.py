"""CSRF protection for the HTML forms: a cookie plus an HMAC of it in the form.

The cookie is random per browser and ``SameSite=Strict``; the hidden field is
HMAC-SHA256(server secret, cookie). A cross-site form post carries neither a
readable cookie nor the matching field, so it fails. The secret lives in the data
directory (0600) or comes from ``DROPLINE_CSRF_SECRET``.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

COOKIE = "dl_csrf"
ENV_SECRET = "DROPLINE_CSRF_SECRET"


def load_secret(data_dir: Path) -> bytes:
    env = os.environ.get(ENV_SECRET)
    if env:
        return env.encode()
    keys = data_dir / "keys"
    keys.mkdir(parents=True, exist_ok=True)
    path = keys / "csrf.secret"
    try:
        return path.read_bytes()
    except FileNotFoundError:
        pass
    value = secrets.token_hex(32).encode()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_bytes()
    with os.fdopen(fd, "wb") as fh:
        fh.write(value)
    return value


class Csrf:
    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def token_for(self, cookie: str) -> str:
        return hmac.new(self._secret, cookie.encode(), hashlib.sha256).hexdigest()

    @staticmethod
    def new_cookie() -> str:
        return secrets.token_urlsafe(32)

    def check(self, cookie: str | None, token: str | None) -> bool:
        if not cookie or not token:
            return False
        return hmac.compare_digest(self.token_for(cookie), token)


__all__ = ["COOKIE", "Csrf", "load_secret"]
