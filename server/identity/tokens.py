"""JWT access tokens: the ES256 signing keys (with ``kid`` and rotation), issue and verify.

Keys live in ``<data dir>/keys/`` as private JWK files (0600, directory 0700), in
the shared database's ``signing_keys`` table when nodes share PostgreSQL
(:mod:`dropline.server.identity.key_table`), or come from ``DROPLINE_JWT_SIGNING_KEY``
(a PEM private key, which overrides both). The newest key signs;
every key still in the directory is published in the JWKS and verifies, so a
rotation logs nobody out. Verification pins the algorithm to ES256 (``none`` and
HMAC tricks never reach a key) and checks issuer, audience, expiry and ``nbf``.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, KeySet

log = logging.getLogger(__name__)

ALGORITHM = "ES256"
ENV_SIGNING_KEY = "DROPLINE_JWT_SIGNING_KEY"
LEEWAY_SECONDS = 30


class InvalidToken(Exception):
    """The token is not one of ours, or no longer valid. The message is for logs only."""


@dataclass(frozen=True, slots=True)
class KeyInfo:
    kid: str
    created_at: float
    current: bool


def _write_private(path: Path, text: str) -> None:
    # Create with 0600 from the start: a chmod after writing would leave a window.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)


class SigningKeys:
    """The key ring, kept in ``<data dir>/keys/``: one server per data dir (SQLite), so
    files are enough there and today's data dirs keep their keys. Re-reads the directory
    when it changes (a CLI rotation). Nodes sharing a PostgreSQL database use
    :class:`dropline.server.identity.key_table.TableSigningKeys` instead."""

    # Least time between two re-reads for a token whose ``kid`` is not in the ring.
    UNKNOWN_KID_INTERVAL = 1.0

    def __init__(self, data_dir: Path) -> None:
        self.dir = data_dir / "keys"
        self._lock = threading.Lock()
        self._mtime: float | None = None
        self._keys: list[tuple[float, ECKey]] = []
        self._env_key = os.environ.get(ENV_SIGNING_KEY)
        self._unknown_at = 0.0
        self._load()

    def _load(self) -> None:
        with self._lock:
            if self._env_key:
                key = ECKey.import_key(self._env_key)
                if key.kid is None:
                    key = ECKey.import_key(self._env_key, {"kid": key.thumbprint()})
                self._keys = [(0.0, key)]
                return
            keys = self._read_keys()
            keys.sort(key=lambda item: item[0])
            self._keys = keys

    def _read_keys(self) -> list[tuple[float, ECKey]]:
        """Every live key with its creation time, creating the first one if none."""
        self.dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.dir, 0o700)
        keys = []
        for path in sorted(self.dir.glob("*.jwk")):
            data = json.loads(path.read_text(encoding="utf-8"))
            keys.append((float(data.pop("created_at", 0.0)), ECKey.import_key(data)))
        if not keys:
            keys.append(self._create())
        self._mtime = self.dir.stat().st_mtime
        return keys

    @staticmethod
    def _new_key() -> tuple[float, ECKey]:
        kid = uuid.uuid4().hex[:16]
        key = ECKey.generate_key("P-256", parameters={"kid": kid, "alg": ALGORITHM, "use": "sig"})
        return time.time(), key

    def _create(self) -> tuple[float, ECKey]:
        created, key = self._new_key()
        data = {**key.as_dict(private=True), "created_at": created}
        _write_private(self.dir / f"{int(created * 1e6):020d}-{key.kid}.jwk", json.dumps(data))
        log.info("created signing key %s", key.kid)
        return created, key

    def _stale(self) -> bool:
        try:
            mtime: float | None = self.dir.stat().st_mtime
        except FileNotFoundError:
            mtime = None
        return mtime != self._mtime

    def _refresh(self) -> None:
        if not self._env_key and self._stale():
            self._load()

    def current(self) -> ECKey:
        self._refresh()
        return self._keys[-1][1]

    def key_set(self) -> KeySet:
        self._refresh()
        return KeySet([key for _, key in self._keys])

    def key_set_for(self, kid: str | None) -> KeySet:
        """The ring, re-read first if ``kid`` is not in it (a key another node made
        since the last read), at most once per ``UNKNOWN_KID_INTERVAL``: forged kids
        cannot make every request a database read."""
        found = self.key_set()
        if kid is None or self._env_key or any(k.kid == kid for _, k in self._keys):
            return found
        now = time.monotonic()
        if now - self._unknown_at < self.UNKNOWN_KID_INTERVAL:
            return found
        self._unknown_at = now
        self._load()
        return KeySet([key for _, key in self._keys])

    def jwks(self) -> dict[str, Any]:
        self._refresh()
        return {"keys": [key.as_dict(private=False) for _, key in self._keys]}

    def list(self) -> list[KeyInfo]:
        self._refresh()
        last = len(self._keys) - 1
        return [
            KeyInfo(str(key.kid), created, i == last) for i, (created, key) in enumerate(self._keys)
        ]

    def rotate(self) -> str:
        """A new current key; older keys keep verifying until retired."""
        if self._env_key:
            raise ValueError(f"keys come from {ENV_SIGNING_KEY}: rotate them there")
        with self._lock:
            _, key = self._create()
        self._load()
        return str(key.kid)

    def retire(self, kid: str) -> None:
        """Stop publishing ``kid``; tokens it signed stop verifying. Not the current key."""
        if self._env_key:
            raise ValueError(f"keys come from {ENV_SIGNING_KEY}: change them there")
        self._load()
        if kid == self.current().kid:
            raise ValueError("that is the current signing key: rotate first")
        if not any(k.kid == kid for _, k in self._keys):
            raise ValueError(f"no signing key {kid!r}")
        self._remove(kid)
        self._load()

    def _remove(self, kid: str) -> None:
        for path in self.dir.glob(f"*-{kid}.jwk"):
            path.unlink()


@dataclass(frozen=True, slots=True)
class AccessClaims:
    subject: str
    tenant_id: str
    client_id: str
    scopes: frozenset[str]
    grant_id: str
    token_id: str
    expires_at: int


class TokenService:
    def __init__(self, keys: SigningKeys, lifetime_seconds: int = 900) -> None:
        self.keys = keys
        self.lifetime = lifetime_seconds

    def issue(
        self,
        *,
        issuer: str,
        audience: str,
        user_id: str,
        tenant_id: str,
        client_id: str,
        scope: str,
        grant_id: str,
        lifetime: int | None = None,
    ) -> tuple[str, int]:
        """A signed access token and its lifetime in seconds."""
        now = int(time.time())
        ttl = lifetime or self.lifetime
        key = self.keys.current()
        claims = {
            "iss": issuer,
            "aud": audience,
            "sub": user_id,
            "tid": tenant_id,
            "client_id": client_id,
            "scope": scope,
            "sid": grant_id,
            "jti": uuid.uuid4().hex,
            "iat": now,
            "nbf": now,
            "exp": now + ttl,
        }
        header = {"alg": ALGORITHM, "kid": key.kid, "typ": "at+jwt"}
        return jwt.encode(header, claims, key, algorithms=[ALGORITHM]), ttl

    def verify(self, token: str, *, issuer: str, audience: str) -> AccessClaims:
        try:
            keys = self.keys.key_set_for(_header_kid(token))
            decoded = jwt.decode(token, keys, algorithms=[ALGORITHM])
            registry = jwt.JWTClaimsRegistry(
                now=int(time.time()),
                leeway=LEEWAY_SECONDS,
                iss={"essential": True, "value": issuer},
                aud={"essential": True, "value": audience},
                exp={"essential": True},
                sub={"essential": True},
                tid={"essential": True},
                sid={"essential": True},
            )
            registry.validate(decoded.claims)
        except (JoseError, ValueError, KeyError, TypeError) as exc:
            raise InvalidToken(f"{type(exc).__name__}: {exc}") from exc
        if decoded.header.get("alg") != ALGORITHM:
            raise InvalidToken("unexpected algorithm")
        c = decoded.claims
        return AccessClaims(
            subject=str(c["sub"]),
            tenant_id=str(c["tid"]),
            client_id=str(c.get("client_id", "")),
            scopes=frozenset(str(c.get("scope", "")).split()),
            grant_id=str(c["sid"]),
            token_id=str(c.get("jti", "")),
            expires_at=int(c["exp"]),
        )


def _header_kid(token: str) -> str | None:
    """The ``kid`` a token names, unverified: only to pick the keys to verify with."""
    try:
        head = token.split(".", 1)[0]
        header = json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
    except ValueError:
        return None
    kid = header.get("kid") if isinstance(header, dict) else None
    return kid if isinstance(kid, str) else None


def looks_like_jwt(token: str) -> bool:
    return token.count(".") == 2 and token.startswith("ey")


__all__ = ["AccessClaims", "InvalidToken", "SigningKeys", "TokenService", "looks_like_jwt"]
