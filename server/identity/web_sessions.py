"""Browser sessions of the web client: created after an OAuth sign-in, looked up from the
session cookie on every request, ended on sign-out or when the sign-in (grant) is revoked.

The cookie holds 256 random bits; only their SHA-256 is stored, so a database leak
yields no usable session. A session lives at most :data:`LIFETIME_SECONDS` and dies
after :data:`IDLE_SECONDS` without a request. Each one is tied to an OAuth grant, so
revoking that sign-in (the user's sign-in list, an admin, a disabled user) ends it.
No web framework here.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass

from sqlalchemy import Connection, delete, select, update

from dropline.server.identity.oauth.store import OAuthStore
from dropline.server.storage import schema
from dropline.server.storage.db import Database

COOKIE = "dl_session"
LIFETIME_SECONDS = 12 * 3600
IDLE_SECONDS = 2 * 3600
# last_seen_at is written at most this often, so browsing is not a write per request.
TOUCH_SECONDS = 60

W = schema.web_sessions


def _hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode("utf-8")).hexdigest()


def csrf_subject(session_id: str) -> str:
    """What the CSRF token of a session is the HMAC of (kept apart from form cookies)."""
    return "web-session:" + session_id


@dataclass(frozen=True, slots=True)
class WebSession:
    id_hash: str
    tenant_id: str
    user_id: str
    grant_id: str | None
    scopes: frozenset[str]
    created_at: float
    expires_at: float


class WebSessions:
    def __init__(
        self, db: Database, lifetime: float = LIFETIME_SECONDS, idle: float = IDLE_SECONDS
    ) -> None:
        self.db = db
        self.lifetime = lifetime
        self.idle = idle

    def create(self, tenant_id: str, user_id: str, grant_id: str, scope: str) -> str:
        """A new session for this sign-in; returns its id (the cookie value, shown once)."""
        session_id = secrets.token_urlsafe(32)
        now = time.time()
        with self.db.write() as conn:
            self._purge(conn, now)
            conn.execute(
                W.insert().values(
                    id_hash=_hash(session_id),
                    tenant_id=tenant_id,
                    user_id=user_id,
                    grant_id=grant_id,
                    scope=scope,
                    created_at=now,
                    expires_at=now + self.lifetime,
                    last_seen_at=now,
                )
            )
        return session_id

    def lookup(self, session_id: str, now: float | None = None) -> WebSession | None:
        """The live session behind a cookie value, or None (unknown, expired, idle too
        long, its sign-in revoked or gone, or its user disabled)."""
        now = time.time() if now is None else now
        g, u = schema.oauth_grants, schema.users
        with self.db.read() as conn:
            row = conn.execute(
                select(W, g.c.revoked_at, u.c.is_active)
                .join(g, g.c.id == W.c.grant_id)
                .join(u, u.c.id == W.c.user_id)
                .where(W.c.id_hash == _hash(session_id))
            ).first()
        if row is None or not row.is_active or row.revoked_at is not None:
            return None
        if row.expires_at <= now or row.last_seen_at + self.idle <= now:
            return None
        if now - row.last_seen_at >= TOUCH_SECONDS:
            with self.db.write() as conn:
                conn.execute(update(W).where(W.c.id_hash == row.id_hash).values(last_seen_at=now))
        return WebSession(
            id_hash=row.id_hash,
            tenant_id=row.tenant_id,
            user_id=row.user_id,
            grant_id=row.grant_id,
            scopes=frozenset(row.scope.split()),
            created_at=row.created_at,
            expires_at=row.expires_at,
        )

    def end(self, session_id: str, reason: str = "signed out") -> WebSession | None:
        """Sign out: the session row goes and its OAuth grant is revoked. Returns the
        session that ended, or None when there was none."""
        with self.db.write() as conn:
            row = conn.execute(select(W).where(W.c.id_hash == _hash(session_id))).first()
            if row is None:
                return None
            conn.execute(delete(W).where(W.c.id_hash == row.id_hash))
            if row.grant_id is not None:
                OAuthStore(self.db).revoke_grant(conn, row.grant_id, reason)
        return WebSession(
            id_hash=row.id_hash,
            tenant_id=row.tenant_id,
            user_id=row.user_id,
            grant_id=row.grant_id,
            scopes=frozenset(row.scope.split()),
            created_at=row.created_at,
            expires_at=row.expires_at,
        )

    def _purge(self, conn: Connection, now: float) -> None:
        conn.execute(
            delete(W).where((W.c.expires_at <= now) | (W.c.last_seen_at <= now - self.idle))
        )


__all__ = [
    "COOKIE",
    "IDLE_SECONDS",
    "LIFETIME_SECONDS",
    "WebSession",
    "WebSessions",
    "csrf_subject",
]
