"""Table definitions (SQLAlchemy Core). Migrations create them; services query them.

Every row that belongs to a customer carries ``tenant_id``, and every query
filters on it: the tenant comes from the credential, never from the request.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    text,
)

metadata = MetaData()

tenants = Table(
    "tenants",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("created_at", Float, nullable=False),
)

users = Table(
    "users",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("tenant_id", String(36), ForeignKey("tenants.id"), nullable=False),
    Column("email", String(320), nullable=False),
    Column("password_hash", Text, nullable=True),
    Column("is_admin", Boolean, nullable=False, default=False),
    Column("is_active", Boolean, nullable=False, default=True),
    Column("created_at", Float, nullable=False),
    Index("ix_users_tenant_email", "tenant_id", "email", unique=True),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(36), primary_key=True),
    # The public lookup part of the key (after the prefix); the secret is stored hashed.
    Column("lookup", String(32), nullable=False, unique=True),
    Column("secret_hash", String(64), nullable=False),
    Column("tenant_id", String(36), ForeignKey("tenants.id"), nullable=False),
    Column("user_id", String(36), ForeignKey("users.id"), nullable=False),
    Column("name", String(200), nullable=True),
    Column("scopes", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float, nullable=True),
    Column("revoked_at", Float, nullable=True),
    Column("last_used_at", Float, nullable=True),
)

# A file or folder in a user's space. ``path`` is derived from the parent chain and
# kept denormalised for lookups; moves rewrite the subtree's paths in one transaction.
entries = Table(
    "entries",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("tenant_id", String(36), nullable=False),
    Column("space_id", String(36), nullable=False),
    Column("parent_id", String(36), nullable=True),
    Column("name", Text, nullable=False),
    Column("path", Text, nullable=False),
    Column("type", String(8), nullable=False),
    Column("size", BigInteger, nullable=False, default=0),
    Column("sha256", String(64), nullable=True),
    Column("rev", String(32), nullable=False),
    Column("mtime", Float, nullable=True),
    Column("blob_id", String(36), nullable=True),
    Column("trashed_at", Float, nullable=True),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Index(
        "ux_entries_live_path",
        "space_id",
        "path",
        unique=True,
        sqlite_where=text("trashed_at IS NULL"),
        postgresql_where=text("trashed_at IS NULL"),
    ),
    Index("ix_entries_parent", "space_id", "parent_id"),
)

# Every published content version of a file, kept after overwrite and delete.
revisions = Table(
    "revisions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("entry_id", String(36), nullable=False),
    Column("tenant_id", String(36), nullable=False),
    Column("rev", String(32), nullable=False),
    Column("blob_id", String(36), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("mtime", Float, nullable=True),
    Column("created_at", Float, nullable=False),
    Index("ix_revisions_entry", "entry_id"),
)

# The change feed: one row per metadata change, written in the same transaction.
changes = Table(
    "changes",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("tenant_id", String(36), nullable=False),
    Column("space_id", String(36), nullable=False),
    Column("entry_id", String(36), nullable=False),
    Column("action", String(16), nullable=False),
    Column("path", Text, nullable=False),
    Column("old_path", Text, nullable=True),
    Column("type", String(8), nullable=False),
    Column("size", BigInteger, nullable=True),
    Column("sha256", String(64), nullable=True),
    Column("rev", String(32), nullable=True),
    Column("mtime", Float, nullable=True),
    Column("parent_id", String(36), nullable=True),
    Column("at", Float, nullable=False),
    Index("ix_changes_space_seq", "space_id", "seq"),
)

# Per-space lowest sequence still in the feed; cursors below it have expired.
change_floors = Table(
    "change_floors",
    metadata,
    Column("space_id", String(36), primary_key=True),
    Column("floor_seq", Integer, nullable=False),
)

# tus upload sessions; bytes live in the upload directory under the session id.
uploads = Table(
    "uploads",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("tenant_id", String(36), nullable=False),
    Column("space_id", String(36), nullable=False),
    Column("user_id", String(36), nullable=False),
    Column("length", BigInteger, nullable=True),
    Column("offset", BigInteger, nullable=False, default=0),
    Column("target_path", Text, nullable=False),
    Column("sha256", String(64), nullable=True),
    Column("mtime", Float, nullable=True),
    Column("if_rev", String(32), nullable=True),
    Column("metadata", Text, nullable=False, default="{}"),
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
    Column("entry_id", String(36), nullable=True),
)
