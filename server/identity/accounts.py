"""Tenants, users and API keys: creation and credential checks. No web framework here.

API keys look like ``dlk_<lookup>_<secret>``: the lookup part finds the row, the
secret is compared by its SHA-256. A key carries 256 bits of randomness, so a
fast hash is the right tool (argon2 is for low-entropy passwords, and would cost
tens of milliseconds on every request).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
import uuid
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select, update

from dropline.server.storage import schema
from dropline.server.storage.db import Database

KEY_PREFIX = "dlk_"
DEFAULT_KEY_SCOPES = ("files:read", "files:write")
ALL_SCOPES = ("files:read", "files:write", "transfers", "webhooks", "audit:read", "admin")
# Webhook subscriptions receive every user's file events and audit:read every user's
# audit rows, so these scopes go to tenant administrators only.
TENANT_WIDE_SCOPES = ("webhooks", "audit:read", "admin")
DEFAULT_KEY_LIFETIME_SECONDS = 90 * 24 * 3600

_hasher = PasswordHasher()


class IdentityError(ValueError):
    """A readable refusal (unknown tenant, duplicate user, bad scope)."""


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: resolved from the credential alone."""

    tenant_id: str
    user_id: str
    credential_id: str
    kind: str  # "api_key", "oauth", "mtls", "web"
    scopes: frozenset[str]
    # What the caller says it is (the User-Agent's first product, or the credential
    # kind), kept with each revision it publishes. Set per request by http.auth.
    client: str | None = None

    @property
    def space_id(self) -> str:
        # Each user has one file space; tenants never share one.
        return self.user_id


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    if not password_hash:
        # Spend the same time as a real check, so unknown users are not revealed.
        _hasher.hash(password)
        return False
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def _secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def parse_duration(text: str) -> int:
    """``90d``, ``12h``, ``30m``, ``45s`` -> seconds."""
    units = {"d": 86400, "h": 3600, "m": 60, "s": 1}
    text = text.strip().lower()
    if len(text) >= 2 and text[-1] in units and text[:-1].isdigit():
        return int(text[:-1]) * units[text[-1]]
    raise IdentityError(f"invalid duration {text!r}: use a number followed by d, h, m or s")


class Identity:
    def __init__(self, db: Database) -> None:
        self.db = db

    def create_tenant(self, name: str) -> str:
        name = name.strip()
        if not name:
            raise IdentityError("tenant name must not be empty")
        with self.db.write() as conn:
            if conn.execute(
                select(schema.tenants.c.id).where(schema.tenants.c.name == name)
            ).first():
                raise IdentityError(f"tenant {name!r} already exists")
            tenant_id = str(uuid.uuid4())
            conn.execute(
                schema.tenants.insert().values(id=tenant_id, name=name, created_at=time.time())
            )
        return tenant_id

    def tenant_id(self, name: str) -> str:
        with self.db.read() as conn:
            row = conn.execute(
                select(schema.tenants.c.id).where(schema.tenants.c.name == name)
            ).first()
        if row is None:
            raise IdentityError(f"no tenant named {name!r}")
        return str(row.id)

    def create_user(
        self, tenant: str, email: str, password: str | None, admin: bool = False
    ) -> str:
        tenant_id = self.tenant_id(tenant)
        email = email.strip().lower()
        if "@" not in email or len(email) > 320:
            raise IdentityError(f"invalid email address {email!r}")
        pw_hash = hash_password(password) if password else None
        with self.db.write() as conn:
            exists = conn.execute(
                select(schema.users.c.id).where(
                    schema.users.c.tenant_id == tenant_id, schema.users.c.email == email
                )
            ).first()
            if exists:
                raise IdentityError(f"user {email} already exists in tenant {tenant!r}")
            user_id = str(uuid.uuid4())
            conn.execute(
                schema.users.insert().values(
                    id=user_id,
                    tenant_id=tenant_id,
                    email=email,
                    password_hash=pw_hash,
                    is_admin=admin,
                    is_active=True,
                    created_at=time.time(),
                )
            )
        return user_id

    def set_password(self, tenant: str, email: str, password: str) -> None:
        """Replace a user's sign-in password (``None`` before: a service account)."""
        user_id = self.user_id(self.tenant_id(tenant), email)
        with self.db.write() as conn:
            conn.execute(
                update(schema.users)
                .where(schema.users.c.id == user_id)
                .values(password_hash=hash_password(password))
            )

    def user_id(self, tenant_id: str, email: str) -> str:
        with self.db.read() as conn:
            row = conn.execute(
                select(schema.users.c.id).where(
                    schema.users.c.tenant_id == tenant_id,
                    schema.users.c.email == email.strip().lower(),
                )
            ).first()
        if row is None:
            raise IdentityError(f"no user {email} in that tenant")
        return str(row.id)

    def create_api_key(
        self,
        tenant: str,
        email: str,
        scopes: tuple[str, ...] = DEFAULT_KEY_SCOPES,
        expires_in: int | None = DEFAULT_KEY_LIFETIME_SECONDS,
        name: str | None = None,
    ) -> tuple[str, str]:
        """Create a key; returns ``(key_id, plaintext)``. The plaintext is never stored."""
        unknown = sorted(set(scopes) - set(ALL_SCOPES))
        if unknown:
            raise IdentityError(
                f"unknown scope(s) {', '.join(unknown)}; known: {', '.join(ALL_SCOPES)}"
            )
        tenant_id = self.tenant_id(tenant)
        user_id = self.user_id(tenant_id, email)
        lookup = secrets.token_hex(8)
        secret = secrets.token_urlsafe(32)
        now = time.time()
        key_id = str(uuid.uuid4())
        with self.db.write() as conn:
            conn.execute(
                schema.api_keys.insert().values(
                    id=key_id,
                    lookup=lookup,
                    secret_hash=_secret_hash(secret),
                    tenant_id=tenant_id,
                    user_id=user_id,
                    name=name,
                    scopes=" ".join(sorted(set(scopes))),
                    created_at=now,
                    expires_at=now + expires_in if expires_in else None,
                )
            )
        return key_id, f"{KEY_PREFIX}{lookup}_{secret}"

    def authenticate_api_key(self, key: str) -> Principal | None:
        if not key.startswith(KEY_PREFIX):
            return None
        lookup, sep, secret = key[len(KEY_PREFIX) :].partition("_")
        if not sep or not lookup or not secret:
            return None
        with self.db.read() as conn:
            row = conn.execute(
                select(schema.api_keys, schema.users.c.is_active)
                .join(schema.users, schema.users.c.id == schema.api_keys.c.user_id)
                .where(schema.api_keys.c.lookup == lookup)
            ).first()
        if row is None or not hmac.compare_digest(row.secret_hash, _secret_hash(secret)):
            return None
        now = time.time()
        if row.revoked_at is not None or (row.expires_at is not None and row.expires_at < now):
            return None
        if not row.is_active:
            return None
        if row.last_used_at is None or now - row.last_used_at > 60:
            # Coarse last-used bookkeeping: one write a minute per key, not per request.
            with self.db.write() as conn:
                conn.execute(
                    update(schema.api_keys)
                    .where(schema.api_keys.c.id == row.id)
                    .values(last_used_at=now)
                )
        return Principal(
            tenant_id=row.tenant_id,
            user_id=row.user_id,
            credential_id=row.id,
            kind="api_key",
            scopes=frozenset(row.scopes.split()),
        )
