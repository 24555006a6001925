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

# Numbers that only ever grow (change-feed and audit sequence numbers, event and revision
# ids) and the columns that hold them: 64-bit on PostgreSQL, where INTEGER is 32-bit and a
# busy cluster could run through it; on SQLite INTEGER is 64-bit already, and only
# INTEGER PRIMARY KEY is the rowid that AUTOINCREMENT needs.
Counter = Integer().with_variant(BigInteger(), "postgresql")

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
    Index("ix_entries_parent", "space_id", "parent_id", "name"),
    # Which rows name a blob: asked before any blob is deleted (files.blob_refs).
    Index("ix_entries_blob", "blob_id"),
)

# Every published content version of a file, kept after overwrite and delete.
revisions = Table(
    "revisions",
    metadata,
    Column("id", Counter, primary_key=True, autoincrement=True),
    Column("entry_id", String(36), nullable=False),
    Column("tenant_id", String(36), nullable=False),
    Column("rev", String(32), nullable=False),
    Column("blob_id", String(36), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("mtime", Float, nullable=True),
    Column("created_at", Float, nullable=False),
    # Who published it and through which client (the User-Agent's product, or the
    # credential kind): what a person needs to tell a colleague's save from their own.
    Column("user_id", String(36), nullable=True),
    Column("client", String(120), nullable=True),
    Index("ix_revisions_entry", "entry_id"),
    Index("ix_revisions_blob", "blob_id"),
)

# The change feed: one row per metadata change, written in the same transaction.
changes = Table(
    "changes",
    metadata,
    Column("seq", Counter, primary_key=True, autoincrement=True),
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
    # Sequence numbers are cursors: never reuse one, even after retention pruned the newest.
    sqlite_autoincrement=True,
)

# Per-space lowest sequence still in the feed; cursors below it have expired.
change_floors = Table(
    "change_floors",
    metadata,
    Column("space_id", String(36), primary_key=True),
    Column("floor_seq", Counter, nullable=False),
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
    # Set when the upload was published: the entry and rev it became.
    Column("entry_id", String(36), nullable=True),
    Column("rev", String(32), nullable=True),
)

# With blobs in an object store, the bytes of a tus upload in progress are kept there too,
# one part per PATCH (a blob of the staging store named ``part_id``), so that any node can
# take the next PATCH (uploads.shared_staging). A part covers [offset, offset + length).
upload_parts = Table(
    "upload_parts",
    metadata,
    Column("upload_id", String(36), primary_key=True),
    Column("offset", BigInteger, primary_key=True),
    Column("length", BigInteger, nullable=False),
    Column("part_id", String(32), nullable=False, unique=True),
)

# --- Security (audit trail, events outbox, OAuth, policies, bans, mTLS, encryption) ---

# Append-only audit trail. Each row's ``hash`` covers its fields and the previous
# row's hash, so an edited or removed row breaks the chain (dropline.server.audit.trail).
audit_events = Table(
    "audit_events",
    metadata,
    Column("seq", Counter, primary_key=True, autoincrement=True),
    Column("id", String(36), nullable=False, unique=True),
    Column("at", Float, nullable=False),
    Column("tenant_id", String(36), nullable=True),
    Column("actor", String(320), nullable=True),
    Column("credential_id", String(36), nullable=True),
    Column("credential_kind", String(16), nullable=True),
    Column("source_ip", String(64), nullable=True),
    Column("action", String(64), nullable=False),
    Column("resource", Text, nullable=True),
    Column("outcome", String(16), nullable=False),
    Column("request_id", String(64), nullable=True),
    Column("detail", Text, nullable=False, default="{}"),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
    Index("ix_audit_tenant_seq", "tenant_id", "seq"),
    Index("ix_audit_at", "at"),
)

# Where the chain starts after retention pruned older rows: the hash of the last pruned row.
audit_anchor = Table(
    "audit_anchor",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("seq", Counter, nullable=False),
    Column("hash", String(64), nullable=False),
    Column("pruned_at", Float, nullable=False),
)

# Durable outbox of domain events (policy.violated, auth.failed, file events...),
# written in the same transaction as the audit row; webhooks deliver from it.
events = Table(
    "events",
    metadata,
    Column("id", Counter, primary_key=True, autoincrement=True),
    Column("tenant_id", String(36), nullable=True),
    Column("type", String(64), nullable=False),
    Column("payload", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    Index("ix_events_tenant_id", "tenant_id", "id"),
)

super_admins = Table(
    "super_admins",
    metadata,
    Column("user_id", String(36), ForeignKey("users.id"), primary_key=True),
    Column("created_at", Float, nullable=False),
)

oauth_clients = Table(
    "oauth_clients",
    metadata,
    Column("client_id", String(64), primary_key=True),
    # NULL for first-party clients usable by every tenant (dropline-desktop).
    Column("tenant_id", String(36), ForeignKey("tenants.id"), nullable=True),
    Column("name", String(200), nullable=False),
    Column("secret_hash", String(64), nullable=True),
    Column("redirect_uris", Text, nullable=False, default="[]"),
    Column("grant_types", Text, nullable=False),
    Column("scopes", Text, nullable=False),
    Column("loopback_redirects", Boolean, nullable=False, default=False),
    # The service user a client_credentials token acts as.
    Column("service_user_id", String(36), ForeignKey("users.id"), nullable=True),
    Column("created_at", Float, nullable=False),
    Column("revoked_at", Float, nullable=True),
)

# One sign-in: every access and refresh token it produces shares the grant id
# (the JWT ``sid``); revoking the grant ends them all.
oauth_grants = Table(
    "oauth_grants",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("tenant_id", String(36), nullable=False),
    Column("user_id", String(36), nullable=False),
    Column("client_id", String(64), nullable=False),
    Column("scope", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("revoked_at", Float, nullable=True),
    Column("revoked_reason", String(64), nullable=True),
)

oauth_codes = Table(
    "oauth_codes",
    metadata,
    Column("code_hash", String(64), primary_key=True),
    Column("client_id", String(64), nullable=False),
    Column("tenant_id", String(36), nullable=False),
    Column("user_id", String(36), nullable=False),
    Column("redirect_uri", Text, nullable=False),
    Column("scope", Text, nullable=False),
    Column("code_challenge", String(128), nullable=False),
    Column("code_challenge_method", String(8), nullable=False),
    Column("expires_at", Float, nullable=False),
    Column("used_at", Float, nullable=True),
)

oauth_refresh_tokens = Table(
    "oauth_refresh_tokens",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("grant_id", String(36), ForeignKey("oauth_grants.id"), nullable=False),
    Column("client_id", String(64), nullable=False),
    Column("scope", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
    Column("used_at", Float, nullable=True),
    Index("ix_refresh_grant", "grant_id"),
)

oauth_device_codes = Table(
    "oauth_device_codes",
    metadata,
    Column("device_code_hash", String(64), primary_key=True),
    Column("user_code", String(16), nullable=False, unique=True),
    Column("client_id", String(64), nullable=False),
    Column("scope", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
    Column("interval", Integer, nullable=False),
    Column("last_poll_at", Float, nullable=True),
    Column("tenant_id", String(36), nullable=True),
    Column("user_id", String(36), nullable=True),
    # NULL while pending; True approved, False denied.
    Column("approved", Boolean, nullable=True),
    Column("used_at", Float, nullable=True),
)

# ABAC rules per tenant (user_id NULL) or per user; ``rules`` is JSON (guard.policy).
policies = Table(
    "policies",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("tenant_id", String(36), ForeignKey("tenants.id"), nullable=False),
    Column("user_id", String(36), nullable=True),
    Column("rules", Text, nullable=False),
    Column("updated_at", Float, nullable=False),
    Index("ux_policies_scope", "tenant_id", "user_id", unique=True),
)

# Source addresses banned by the brute-force defender.
bans = Table(
    "bans",
    metadata,
    Column("ip", String(64), primary_key=True),
    Column("until", Float, nullable=False),
    Column("strikes", Integer, nullable=False),
    Column("reason", String(200), nullable=False),
    Column("created_at", Float, nullable=False),
)

# Client certificates (by SHA-256 fingerprint) mapped to a service user.
client_certs = Table(
    "client_certs",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("fingerprint", String(64), nullable=False, unique=True),
    Column("subject", Text, nullable=False),
    Column("tenant_id", String(36), ForeignKey("tenants.id"), nullable=False),
    Column("user_id", String(36), ForeignKey("users.id"), nullable=False),
    Column("scopes", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("revoked_at", Float, nullable=True),
)

# Per-tenant data keys for encryption at rest, wrapped by the master key.
tenant_keys = Table(
    "tenant_keys",
    metadata,
    Column("tenant_id", String(36), ForeignKey("tenants.id"), primary_key=True),
    Column("wrapped_key", Text, nullable=False),
    Column("created_at", Float, nullable=False),
)

# ES256 signing keys of the access tokens when nodes share a PostgreSQL database
# (dropline.server.identity.key_table): every node signs with the newest live key and
# verifies with all live ones. ``private_jwk`` is sealed with the master key when one
# is configured. A retired key is kept (``retired_at``) but neither signs nor verifies.
signing_keys = Table(
    "signing_keys",
    metadata,
    Column("kid", String(32), primary_key=True),
    Column("private_jwk", Text, nullable=False),
    Column("sealed", Boolean, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("retired_at", Float, nullable=True),
)

# Check values of keys every node must be given alike (``master``: an HMAC of a
# constant under the master key), so a node started with another key refuses to start.
key_checks = Table(
    "key_checks",
    metadata,
    Column("name", String(32), primary_key=True),
    Column("check_value", String(64), nullable=False),
    Column("created_at", Float, nullable=False),
)

# --- Operations: asynchronous transfers, share links, webhooks ---

# One asynchronous transfer job. Jobs are rows, so they survive a restart: a job
# left "running" by a dead process is queued again and resumes at ``files_done``.
transfers = Table(
    "transfers",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("tenant_id", String(36), nullable=False),
    Column("user_id", String(36), nullable=False),
    Column("credential_id", String(36), nullable=True),
    Column("kind", String(16), nullable=False),
    Column("file_ids", Text, nullable=False),
    # The destination as the caller gave it, minus secrets (see ``secrets``).
    Column("destination", Text, nullable=False),
    # Push headers and the share password hash: kept apart so no answer shows them.
    Column("secrets", Text, nullable=False, default="{}"),
    Column("state", String(16), nullable=False),
    Column("bytes_total", BigInteger, nullable=False, default=0),
    Column("bytes_done", BigInteger, nullable=False, default=0),
    Column("files_done", Integer, nullable=False, default=0),
    Column("result", Text, nullable=False, default="{}"),
    Column("error", Text, nullable=True),
    Column("error_code", String(64), nullable=True),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", Float, nullable=False),
    Column("cancel_requested", Boolean, nullable=False, default=False),
    Column("idempotency_key", String(255), nullable=True),
    Column("request_hash", String(64), nullable=True),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("started_at", Float, nullable=True),
    Column("finished_at", Float, nullable=True),
    # The node running the job and until when (storage.leases): another node takes a
    # job whose lease ran out, so a node killed mid-job loses nothing.
    Column("lease_owner", String(100), nullable=True),
    Column("lease_until", Float, nullable=True),
    Index("ux_transfers_idempotency", "tenant_id", "user_id", "idempotency_key", unique=True),
    Index("ix_transfers_due", "state", "next_attempt_at"),
    Index("ix_transfers_owner", "tenant_id", "user_id", "created_at"),
)

# A public share link made by a transfer. The token is stored hashed; ``files`` is the
# snapshot shared (entry id, name, size, sha256, rev, blob id), so later edits do not leak.
shares = Table(
    "shares",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("tenant_id", String(36), nullable=False),
    Column("user_id", String(36), nullable=False),
    Column("transfer_id", String(36), nullable=False),
    Column("files", Text, nullable=False),
    Column("expires_at", Float, nullable=True),
    Column("max_downloads", Integer, nullable=True),
    Column("downloads", Integer, nullable=False, default=0),
    Column("password_hash", Text, nullable=True),
    Column("allowed_cidrs", Text, nullable=True),
    Column("created_at", Float, nullable=False),
    Column("revoked_at", Float, nullable=True),
    Index("ix_shares_transfer", "transfer_id"),
)

# Webhook subscriptions of a tenant. ``secret`` signs deliveries; during a rotation
# ``previous_secret`` signs too, until ``previous_secret_expires_at``.
webhook_endpoints = Table(
    "webhook_endpoints",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("tenant_id", String(36), nullable=False),
    Column("created_by", String(36), nullable=True),
    Column("url", Text, nullable=False),
    Column("description", Text, nullable=False, default=""),
    Column("event_types", Text, nullable=False),
    Column("active", Boolean, nullable=False, default=True),
    Column("disabled_reason", Text, nullable=True),
    Column("secret", Text, nullable=False),
    Column("previous_secret", Text, nullable=True),
    Column("previous_secret_expires_at", Float, nullable=True),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Index("ix_webhook_endpoints_tenant", "tenant_id"),
)

# One message to one endpoint; its id is the ``webhook-id`` header, the same on every
# attempt. ``body`` is the exact JSON sent (signatures are made per attempt).
webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("endpoint_id", String(36), nullable=False),
    Column("tenant_id", String(36), nullable=False),
    Column("event_id", Counter, nullable=True),
    Column("event_type", String(64), nullable=False),
    Column("body", Text, nullable=False),
    Column("state", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", Float, nullable=True),
    Column("last_status_code", Integer, nullable=True),
    Column("last_error", Text, nullable=True),
    Column("last_latency_ms", Float, nullable=True),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("delivered_at", Float, nullable=True),
    # The node sending the current attempt and until when (storage.leases).
    Column("lease_owner", String(100), nullable=True),
    Column("lease_until", Float, nullable=True),
    Index("ix_webhook_deliveries_due", "state", "next_attempt_at"),
    Index("ix_webhook_deliveries_endpoint", "endpoint_id", "created_at"),
)

# The delivery log: one row per attempt (status, latency, response code).
webhook_attempts = Table(
    "webhook_attempts",
    metadata,
    Column("id", Counter, primary_key=True, autoincrement=True),
    Column("delivery_id", String(40), nullable=False),
    Column("endpoint_id", String(36), nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("at", Float, nullable=False),
    Column("outcome", String(16), nullable=False),
    Column("status_code", Integer, nullable=True),
    Column("latency_ms", Float, nullable=True),
    Column("error", Text, nullable=True),
    Index("ix_webhook_attempts_delivery", "delivery_id", "id"),
)

# How far the webhook dispatcher has fanned out the events outbox.
webhook_cursor = Table(
    "webhook_cursor",
    metadata,
    Column("name", String(32), primary_key=True),
    Column("last_event_id", Counter, nullable=False),
)

# Rate-limit token buckets shared by every node (guard.shared_limits): one row per
# policy, limit and key; ``allowed`` is whether the last hit took a token.
rate_buckets = Table(
    "rate_buckets",
    metadata,
    Column("key", String(200), primary_key=True),
    Column("tokens", Float, nullable=False),
    Column("at", Float, nullable=False),
    Column("allowed", Boolean, nullable=False),
    Index("ix_rate_buckets_at", "at"),
)

# Signed-in browser sessions of the web client. The cookie holds a random secret; only
# its SHA-256 is stored, so a copy of the database opens no session. ``grant_id`` is the
# OAuth grant the session came from: revoking it (sign-out, admin) ends the session.
web_sessions = Table(
    "web_sessions",
    metadata,
    Column("id_hash", String(64), primary_key=True),
    Column("tenant_id", String(36), nullable=False),
    Column("user_id", String(36), nullable=False),
    Column("grant_id", String(36), nullable=True),
    Column("scope", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
    Column("last_seen_at", Float, nullable=False),
    Index("ix_web_sessions_user", "tenant_id", "user_id"),
)
