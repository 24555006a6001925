"""OAuth persistence: clients, sign-ins (grants), codes, refresh tokens, device codes.

Secrets (client secrets, codes, refresh tokens, device codes) are stored only as
SHA-256 digests: each carries at least 256 bits of randomness, so a fast hash is
enough and a database leak yields nothing usable. Single-use values are claimed
with one conditional UPDATE, so two racing requests can never both win.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
import uuid
from dataclasses import dataclass
from enum import Enum

from sqlalchemy import Connection, select, update

from dropline.server.identity.accounts import TENANT_WIDE_SCOPES
from dropline.server.storage import schema
from dropline.server.storage.db import Database

FIRST_PARTY_CLIENT = "dropline-desktop"
# The web client at "/": its only redirect is the server's own WEB_CALLBACK_PATH.
WEB_CLIENT = "dropline-web"
WEB_CALLBACK_PATH = "/web/callback"
USER_SCOPES = ("files:read", "files:write", "transfers")
# Scopes that see the whole tenant (every user's audit rows and file events): only
# tenant administrators get them.
ADMIN_SCOPES = TENANT_WIDE_SCOPES
ALL_SCOPES = USER_SCOPES + ADMIN_SCOPES
DEFAULT_SCOPE = "files:read files:write"
CODE_SECONDS = 60
DEVICE_SECONDS = 600
DEVICE_INTERVAL = 5
# Unambiguous letters for user codes (no vowels, so no words; no I/O/0/1 confusions).
USER_CODE_ALPHABET = "BCDFGHJKLMNPQRSTVWXZ"


def digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def normalise_user_code(code: str) -> str:
    letters = "".join(ch for ch in code.upper() if ch.isalnum())
    return f"{letters[:4]}-{letters[4:]}" if len(letters) == 8 else letters


@dataclass(frozen=True, slots=True)
class ClientRecord:
    client_id: str
    tenant_id: str | None
    name: str
    secret_hash: str | None
    redirect_uris: tuple[str, ...]
    grant_types: tuple[str, ...]
    scopes: tuple[str, ...]
    loopback_redirects: bool
    service_user_id: str | None
    created_at: float
    revoked_at: float | None

    @property
    def public(self) -> bool:
        return self.secret_hash is None

    def as_json(self) -> dict[str, object]:
        return {
            "client_id": self.client_id,
            "name": self.name,
            "type": "public" if self.public else "confidential",
            "redirect_uris": list(self.redirect_uris),
            "grant_types": list(self.grant_types),
            "scopes": list(self.scopes),
            "service_user_id": self.service_user_id,
            "created_at": self.created_at,
            "revoked_at": self.revoked_at,
        }


@dataclass(frozen=True, slots=True)
class CodeRecord:
    client_id: str
    tenant_id: str
    user_id: str
    redirect_uri: str
    scope: str
    code_challenge: str
    code_challenge_method: str


@dataclass(frozen=True, slots=True)
class RefreshRecord:
    grant_id: str
    client_id: str
    scope: str
    tenant_id: str
    user_id: str


class RefreshOutcome(Enum):
    OK = "ok"
    UNKNOWN = "unknown"
    REUSED = "reused"
    EXPIRED = "expired"


@dataclass(frozen=True, slots=True)
class DeviceRecord:
    device_code_hash: str
    user_code: str
    client_id: str
    scope: str
    expires_at: float
    interval: int
    last_poll_at: float | None
    tenant_id: str | None
    user_id: str | None
    approved: bool | None
    used_at: float | None


def _client(row: object) -> ClientRecord:
    r = row
    return ClientRecord(
        client_id=r.client_id,  # type: ignore[attr-defined]
        tenant_id=r.tenant_id,  # type: ignore[attr-defined]
        name=r.name,  # type: ignore[attr-defined]
        secret_hash=r.secret_hash,  # type: ignore[attr-defined]
        redirect_uris=tuple(json.loads(r.redirect_uris)),  # type: ignore[attr-defined]
        grant_types=tuple(r.grant_types.split()),  # type: ignore[attr-defined]
        scopes=tuple(r.scopes.split()),  # type: ignore[attr-defined]
        loopback_redirects=bool(r.loopback_redirects),  # type: ignore[attr-defined]
        service_user_id=r.service_user_id,  # type: ignore[attr-defined]
        created_at=r.created_at,  # type: ignore[attr-defined]
        revoked_at=r.revoked_at,  # type: ignore[attr-defined]
    )


class OAuthStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # -- clients -----------------------------------------------------------------

    def ensure_first_party(self) -> None:
        """The clients every tenant's users sign in with: the desktop client (public,
        PKCE, loopback redirects) and the web client (public, PKCE, redirected to the
        server's own callback, its code exchanged by the server)."""
        self._ensure_client(
            FIRST_PARTY_CLIENT,
            name="Dropline desktop",
            grant_types=(
                "authorization_code",
                "refresh_token",
                "urn:ietf:params:oauth:grant-type:device_code",
            ),
            scopes=ALL_SCOPES,
            loopback_redirects=True,
        )
        self._ensure_client(
            WEB_CLIENT,
            name="Dropline on the web",
            grant_types=("authorization_code",),
            scopes=USER_SCOPES,
            loopback_redirects=False,
        )

    def _ensure_client(
        self,
        client_id: str,
        *,
        name: str,
        grant_types: tuple[str, ...],
        scopes: tuple[str, ...],
        loopback_redirects: bool,
    ) -> None:
        with self.db.write() as conn:
            exists = conn.execute(
                select(schema.oauth_clients.c.client_id).where(
                    schema.oauth_clients.c.client_id == client_id
                )
            ).first()
            if exists:
                return
            conn.execute(
                schema.oauth_clients.insert().values(
                    client_id=client_id,
                    tenant_id=None,
                    name=name,
                    secret_hash=None,
                    redirect_uris="[]",
                    grant_types=" ".join(grant_types),
                    scopes=" ".join(scopes),
                    loopback_redirects=loopback_redirects,
                    service_user_id=None,
                    created_at=time.time(),
                )
            )

    def client(self, client_id: str) -> ClientRecord | None:
        with self.db.read() as conn:
            row = conn.execute(
                select(schema.oauth_clients).where(schema.oauth_clients.c.client_id == client_id)
            ).first()
        if row is None or row.revoked_at is not None:
            return None
        return _client(row)

    def create_client(
        self,
        conn: Connection,
        *,
        tenant_id: str,
        name: str,
        grant_types: tuple[str, ...],
        scopes: tuple[str, ...],
        redirect_uris: tuple[str, ...] = (),
        confidential: bool = True,
        service_user_id: str | None = None,
    ) -> tuple[ClientRecord, str | None]:
        """A tenant's client inside ``conn``; returns it and its secret (shown once)."""
        client_id = "dlc_" + secrets.token_hex(12)
        secret = secrets.token_urlsafe(32) if confidential else None
        values = {
            "client_id": client_id,
            "tenant_id": tenant_id,
            "name": name,
            "secret_hash": digest(secret) if secret else None,
            "redirect_uris": json.dumps(list(redirect_uris)),
            "grant_types": " ".join(grant_types),
            "scopes": " ".join(scopes),
            "loopback_redirects": False,
            "service_user_id": service_user_id,
            "created_at": time.time(),
            "revoked_at": None,
        }
        conn.execute(schema.oauth_clients.insert().values(**values))
        return _client(type("Row", (), values)()), secret

    def list_clients(self, conn: Connection, tenant_id: str) -> list[ClientRecord]:
        rows = conn.execute(
            select(schema.oauth_clients)
            .where(schema.oauth_clients.c.tenant_id == tenant_id)
            .order_by(schema.oauth_clients.c.created_at)
        ).all()
        return [_client(r) for r in rows]

    def tenant_client(
        self, conn: Connection, tenant_id: str, client_id: str
    ) -> ClientRecord | None:
        row = conn.execute(
            select(schema.oauth_clients).where(
                schema.oauth_clients.c.client_id == client_id,
                schema.oauth_clients.c.tenant_id == tenant_id,
            )
        ).first()
        return _client(row) if row is not None else None

    def revoke_client(self, conn: Connection, tenant_id: str, client_id: str) -> bool:
        now = time.time()
        done = conn.execute(
            update(schema.oauth_clients)
            .where(
                schema.oauth_clients.c.client_id == client_id,
                schema.oauth_clients.c.tenant_id == tenant_id,
                schema.oauth_clients.c.revoked_at.is_(None),
            )
            .values(revoked_at=now)
        ).rowcount
        if done:
            conn.execute(
                update(schema.oauth_grants)
                .where(
                    schema.oauth_grants.c.client_id == client_id,
                    schema.oauth_grants.c.revoked_at.is_(None),
                )
                .values(revoked_at=now, revoked_reason="client revoked")
            )
        return bool(done)

    def rotate_client_secret(self, conn: Connection, tenant_id: str, client_id: str) -> str | None:
        secret = secrets.token_urlsafe(32)
        done = conn.execute(
            update(schema.oauth_clients)
            .where(
                schema.oauth_clients.c.client_id == client_id,
                schema.oauth_clients.c.tenant_id == tenant_id,
                schema.oauth_clients.c.revoked_at.is_(None),
                schema.oauth_clients.c.secret_hash.is_not(None),
            )
            .values(secret_hash=digest(secret))
        ).rowcount
        return secret if done else None

    @staticmethod
    def check_secret(client: ClientRecord, secret: str) -> bool:
        if client.secret_hash is None:
            return False
        return hmac.compare_digest(client.secret_hash, digest(secret))

    # -- grants (one sign-in; the JWT "sid") ----------------------------------------

    def create_grant(
        self, conn: Connection, tenant_id: str, user_id: str, client_id: str, scope: str
    ) -> str:
        grant_id = str(uuid.uuid4())
        conn.execute(
            schema.oauth_grants.insert().values(
                id=grant_id,
                tenant_id=tenant_id,
                user_id=user_id,
                client_id=client_id,
                scope=scope,
                created_at=time.time(),
            )
        )
        return grant_id

    def revoke_grant(self, conn: Connection, grant_id: str, reason: str) -> bool:
        return bool(
            conn.execute(
                update(schema.oauth_grants)
                .where(
                    schema.oauth_grants.c.id == grant_id,
                    schema.oauth_grants.c.revoked_at.is_(None),
                )
                .values(revoked_at=time.time(), revoked_reason=reason)
            ).rowcount
        )

    def grant_is_live(self, grant_id: str, tenant_id: str, user_id: str) -> bool:
        """The sign-in still stands and its user is active (checked on every JWT)."""
        with self.db.read() as conn:
            row = conn.execute(
                select(schema.oauth_grants.c.revoked_at, schema.users.c.is_active)
                .join(schema.users, schema.users.c.id == schema.oauth_grants.c.user_id)
                .where(
                    schema.oauth_grants.c.id == grant_id,
                    schema.oauth_grants.c.tenant_id == tenant_id,
                    schema.oauth_grants.c.user_id == user_id,
                )
            ).first()
        return row is not None and row.revoked_at is None and bool(row.is_active)

    # -- authorization codes -----------------------------------------------------

    def save_code(self, code: str, record: CodeRecord) -> None:
        with self.db.write() as conn:
            conn.execute(
                schema.oauth_codes.insert().values(
                    code_hash=digest(code),
                    client_id=record.client_id,
                    tenant_id=record.tenant_id,
                    user_id=record.user_id,
                    redirect_uri=record.redirect_uri,
                    scope=record.scope,
                    code_challenge=record.code_challenge,
                    code_challenge_method=record.code_challenge_method,
                    expires_at=time.time() + CODE_SECONDS,
                )
            )

    def claim_code(self, code: str, client_id: str) -> CodeRecord | None:
        """Spend a code: returns it once, never twice, and never when expired."""
        now = time.time()
        t = schema.oauth_codes
        with self.db.write() as conn:
            row = conn.execute(
                select(t).where(t.c.code_hash == digest(code), t.c.client_id == client_id)
            ).first()
            if row is None or row.used_at is not None or row.expires_at < now:
                return None
            conn.execute(update(t).where(t.c.code_hash == row.code_hash).values(used_at=now))
        return CodeRecord(
            client_id=row.client_id,
            tenant_id=row.tenant_id,
            user_id=row.user_id,
            redirect_uri=row.redirect_uri,
            scope=row.scope,
            code_challenge=row.code_challenge,
            code_challenge_method=row.code_challenge_method,
        )

    # -- refresh tokens ------------------------------------------------------------

    def save_refresh(
        self, conn: Connection, token: str, grant_id: str, client_id: str, scope: str, ttl: int
    ) -> None:
        now = time.time()
        conn.execute(
            schema.oauth_refresh_tokens.insert().values(
                token_hash=digest(token),
                grant_id=grant_id,
                client_id=client_id,
                scope=scope,
                created_at=now,
                expires_at=now + ttl,
            )
        )

    def claim_refresh(
        self, token: str, client_id: str
    ) -> tuple[RefreshOutcome, RefreshRecord | None]:
        """Spend a refresh token. A spent one coming back means it was stolen or
        replayed: the whole sign-in is revoked (RFC 9700 section 4.14.2)."""
        now = time.time()
        rt, g = schema.oauth_refresh_tokens, schema.oauth_grants
        with self.db.write() as conn:
            row = conn.execute(
                select(rt, g.c.tenant_id, g.c.user_id, g.c.revoked_at.label("grant_revoked"))
                .join(g, g.c.id == rt.c.grant_id)
                .where(rt.c.token_hash == digest(token), rt.c.client_id == client_id)
            ).first()
            if row is None or row.grant_revoked is not None:
                return RefreshOutcome.UNKNOWN, None
            record = RefreshRecord(
                row.grant_id, row.client_id, row.scope, row.tenant_id, row.user_id
            )
            if row.used_at is not None:
                self.revoke_grant(conn, row.grant_id, "refresh token reused")
                return RefreshOutcome.REUSED, record
            if row.expires_at < now:
                return RefreshOutcome.EXPIRED, None
            conn.execute(update(rt).where(rt.c.token_hash == row.token_hash).values(used_at=now))
        return RefreshOutcome.OK, record

    def grant_for_refresh(self, token: str) -> tuple[str, str] | None:
        """(grant id, client id) of a refresh token, spent or not (for revocation)."""
        with self.db.read() as conn:
            row = conn.execute(
                select(
                    schema.oauth_refresh_tokens.c.grant_id, schema.oauth_refresh_tokens.c.client_id
                ).where(schema.oauth_refresh_tokens.c.token_hash == digest(token))
            ).first()
        return (row.grant_id, row.client_id) if row is not None else None

    # -- device codes ------------------------------------------------------------

    def save_device(self, device_code: str, user_code: str, client_id: str, scope: str) -> None:
        now = time.time()
        with self.db.write() as conn:
            conn.execute(
                schema.oauth_device_codes.insert().values(
                    device_code_hash=digest(device_code),
                    user_code=user_code,
                    client_id=client_id,
                    scope=scope,
                    created_at=now,
                    expires_at=now + DEVICE_SECONDS,
                    interval=DEVICE_INTERVAL,
                )
            )

    def _device(self, conn: Connection, where: object) -> DeviceRecord | None:
        row = conn.execute(select(schema.oauth_device_codes).where(where)).first()  # type: ignore[arg-type]
        if row is None:
            return None
        return DeviceRecord(
            device_code_hash=row.device_code_hash,
            user_code=row.user_code,
            client_id=row.client_id,
            scope=row.scope,
            expires_at=row.expires_at,
            interval=row.interval,
            last_poll_at=row.last_poll_at,
            tenant_id=row.tenant_id,
            user_id=row.user_id,
            approved=row.approved,
            used_at=row.used_at,
        )

    def device_by_user_code(self, user_code: str) -> DeviceRecord | None:
        with self.db.read() as conn:
            return self._device(
                conn, schema.oauth_device_codes.c.user_code == normalise_user_code(user_code)
            )

    def device_by_code(self, device_code: str) -> DeviceRecord | None:
        with self.db.read() as conn:
            return self._device(
                conn, schema.oauth_device_codes.c.device_code_hash == digest(device_code)
            )

    def decide_device(self, user_code: str, tenant_id: str, user_id: str, approved: bool) -> bool:
        t = schema.oauth_device_codes
        with self.db.write() as conn:
            return bool(
                conn.execute(
                    update(t)
                    .where(
                        t.c.user_code == normalise_user_code(user_code),
                        t.c.approved.is_(None),
                        t.c.expires_at > time.time(),
                    )
                    .values(tenant_id=tenant_id, user_id=user_id, approved=approved)
                ).rowcount
            )

    def poll_device(self, device_code_hash: str) -> bool:
        """Record a poll; True when it came sooner than the interval allows (slow_down).

        Each slow_down adds 5 seconds to the interval, as RFC 8628 section 3.5 asks.
        """
        t = schema.oauth_device_codes
        now = time.time()
        with self.db.write() as conn:
            row = conn.execute(
                select(t.c.last_poll_at, t.c.interval).where(
                    t.c.device_code_hash == device_code_hash
                )
            ).first()
            if row is None:
                return False
            too_fast = row.last_poll_at is not None and now - row.last_poll_at < row.interval
            values: dict[str, object] = {"last_poll_at": now}
            if too_fast:
                values["interval"] = row.interval + 5
            conn.execute(update(t).where(t.c.device_code_hash == device_code_hash).values(**values))
        return too_fast

    def spend_device(self, device_code_hash: str) -> bool:
        t = schema.oauth_device_codes
        with self.db.write() as conn:
            return bool(
                conn.execute(
                    update(t)
                    .where(t.c.device_code_hash == device_code_hash, t.c.used_at.is_(None))
                    .values(used_at=time.time())
                ).rowcount
            )


def new_user_code() -> str:
    letters = "".join(secrets.choice(USER_CODE_ALPHABET) for _ in range(8))
    return f"{letters[:4]}-{letters[4:]}"


__all__ = [
    "ALL_SCOPES",
    "DEFAULT_SCOPE",
    "FIRST_PARTY_CLIENT",
    "WEB_CALLBACK_PATH",
    "WEB_CLIENT",
    "ClientRecord",
    "CodeRecord",
    "DeviceRecord",
    "OAuthStore",
    "RefreshOutcome",
    "RefreshRecord",
    "digest",
    "new_user_code",
    "normalise_user_code",
]
