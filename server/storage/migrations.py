"""Schema migrations: small named functions applied in order, each in its own
transaction with its own "applied" record (the sqlite-utils habit).

Append new migrations at the end; never edit one that has shipped.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from sqlalchemy import Column, Connection, Float, MetaData, String, Table, select

from dropline.server.storage import schema
from dropline.server.storage.db import Database

log = logging.getLogger(__name__)

Migration = Callable[[Connection], None]

_applied = Table(
    "schema_migrations",
    MetaData(),
    Column("name", String(200), primary_key=True),
    Column("applied_at", Float, nullable=False),
)


def m001_identity(conn: Connection) -> None:
    for table in (schema.tenants, schema.users, schema.api_keys):
        table.create(conn)


def m002_files(conn: Connection) -> None:
    for table in (
        schema.entries,
        schema.revisions,
        schema.changes,
        schema.change_floors,
        schema.uploads,
    ):
        table.create(conn)


def m003_security(conn: Connection) -> None:
    for table in (
        schema.audit_events,
        schema.audit_anchor,
        schema.events,
        schema.super_admins,
        schema.oauth_clients,
        schema.oauth_grants,
        schema.oauth_codes,
        schema.oauth_refresh_tokens,
        schema.oauth_device_codes,
        schema.policies,
        schema.bans,
        schema.client_certs,
        schema.tenant_keys,
    ):
        table.create(conn)


def m004_transfers_webhooks(conn: Connection) -> None:
    for table in (
        schema.transfers,
        schema.shares,
        schema.webhook_endpoints,
        schema.webhook_deliveries,
        schema.webhook_attempts,
        schema.webhook_cursor,
    ):
        table.create(conn)


MIGRATIONS: list[tuple[str, Migration]] = [
    ("001_identity", m001_identity),
    ("002_files", m002_files),
    ("003_security", m003_security),
    ("004_transfers_webhooks", m004_transfers_webhooks),
]


def migrate(db: Database) -> list[str]:
    """Apply every pending migration; returns the names applied."""
    with db.write() as conn:
        _applied.create(conn, checkfirst=True)
    done: list[str] = []
    for name, fn in MIGRATIONS:
        with db.write() as conn:
            if conn.execute(select(_applied.c.name).where(_applied.c.name == name)).first():
                continue
            fn(conn)
            conn.execute(_applied.insert().values(name=name, applied_at=time.time()))
            done.append(name)
            log.info("applied migration %s", name)
    return done
