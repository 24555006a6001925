"""Schema migrations: small named functions applied in order, each in its own
transaction with its own "applied" record. Append new ones; never edit a shipped one.
A database naming a migration this code does not know is refused (a downgrade)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence

from sqlalchemy import Column, Connection, Float, MetaData, String, Table, inspect, select

from dropline.server.storage import schema
from dropline.server.storage.db import Database

log = logging.getLogger(__name__)

Migration = Callable[[Connection], None]
Named = tuple[str, Migration]

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


def m005_undo_and_web(conn: Connection) -> None:
    # 002 creates ``revisions`` from today's definition, so on a new database the
    # columns are there already; on one made before this release they are added.
    have = {column["name"] for column in inspect(conn).get_columns(schema.revisions.name)}
    for name in ("user_id", "client"):
        if name not in have:
            column = schema.revisions.c[name]
            kind = column.type.compile(dialect=conn.dialect)
            conn.exec_driver_sql(f"ALTER TABLE {schema.revisions.name} ADD COLUMN {name} {kind}")
    schema.web_sessions.create(conn, checkfirst=True)


def m006_blob_indexes(conn: Connection) -> None:
    # Whether a blob is still named is asked for every blob the sweeper, a purge or
    # retention may delete; without these indexes each question scans both tables.
    # 002 creates them on a new database (today's definition), so only where missing.
    for index in (
        *(i for i in schema.entries.indexes if i.name == "ix_entries_blob"),
        *(i for i in schema.revisions.indexes if i.name == "ix_revisions_blob"),
    ):
        index.create(conn, checkfirst=True)


MIGRATIONS: list[Named] = [
    ("001_identity", m001_identity),
    ("002_files", m002_files),
    ("003_security", m003_security),
    ("004_transfers_webhooks", m004_transfers_webhooks),
    ("005_undo_and_web", m005_undo_and_web),
    ("006_blob_indexes", m006_blob_indexes),
]


class NewerSchema(Exception):
    """The database records a migration this version does not know (a downgrade)."""

    def __init__(self, name: str) -> None:
        super().__init__(
            f"this data directory was written by a newer Dropline (migration {name}); "
            "install that version or newer"
        )
        self.name = name


def check_known(applied: Iterable[str], migrations: Sequence[Named] | None = None) -> None:
    """Raise :class:`NewerSchema` if ``applied`` names a migration not in ``migrations``."""
    known = {name for name, _fn in (MIGRATIONS if migrations is None else migrations)}
    unknown = sorted(set(applied) - known)
    if unknown:
        # Names sort in the order they were added: the last one is the newest.
        raise NewerSchema(unknown[-1])


def applied(db: Database) -> list[str]:
    """The names of the migrations this database has applied, oldest first."""
    with db.read() as conn:
        if not conn.dialect.has_table(conn, _applied.name):
            return []
        rows = conn.execute(select(_applied.c.name).order_by(_applied.c.name)).all()
    return [row.name for row in rows]


def pending(db: Database) -> list[str]:
    """The migrations still to apply, in order; :class:`NewerSchema` on a newer database."""
    done = set(applied(db))
    check_known(done)
    return [name for name, _fn in MIGRATIONS if name not in done]


def migrate(db: Database, migrations: Sequence[Named] | None = None) -> list[str]:
    """Apply every pending migration; returns the names applied.

    ``migrations`` defaults to all of them; a prefix builds the database an older
    version left behind. :class:`NewerSchema` is raised before anything is written.
    """
    migrations = MIGRATIONS if migrations is None else migrations
    check_known(applied(db), migrations)
    with db.write() as conn:
        _applied.create(conn, checkfirst=True)
    done: list[str] = []
    for name, fn in migrations:
        with db.write() as conn:
            if conn.execute(select(_applied.c.name).where(_applied.c.name == name)).first():
                continue
            fn(conn)
            conn.execute(_applied.insert().values(name=name, applied_at=time.time()))
            done.append(name)
            log.info("applied migration %s", name)
    return done
