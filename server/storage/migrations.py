"""Schema migrations: small named functions applied in order, on Alembic. Each name is
also the Alembic revision that runs it (``storage/alembic/versions``), so the history
and the code stay one. Append new ones (function, list entry, revision file); never edit
a shipped one. A database naming a revision this code does not know is refused.

``schema_migrations``, the in-house runner's record, is kept and still written: every
revision adds its name there too, so backup manifests and releases from before Alembic
(which refuse a name they do not know) keep working. ``alembic_version`` is the
authority; a database with only the old record is stamped at its last migration first.
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from functools import cache
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Column, Connection, Float, MetaData, String, Table, inspect, select

from dropline.server.storage import schema
from dropline.server.storage.db import Database

log = logging.getLogger(__name__)
# Alembic says "Context impl SQLiteImpl." on every look at the version table, at INFO;
# what was applied is logged here, once per migration.
logging.getLogger("alembic").setLevel(logging.WARNING)

Migration = Callable[[Connection], None]
Named = tuple[str, Migration]

SCRIPT_LOCATION = Path(__file__).with_name("alembic")
# pg_advisory_xact_lock's key ("DROPLINE" in ASCII): every node and `migrate` takes it
# around an upgrade, so two nodes starting at once cannot both migrate.
LOCK_KEY = 4923084548965224005
LOCK_SQL = f"SELECT pg_advisory_xact_lock({LOCK_KEY})"

_applied = Table(
    "schema_migrations",
    MetaData(),
    Column("name", String(200), primary_key=True),
    Column("applied_at", Float, nullable=False),
)


def _offline(conn: Any) -> bool:
    """Alembic's ``--sql`` mode hands revisions a mock connection that only prints."""
    return not isinstance(conn, Connection)


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
    # Offline SQL cannot look: it is for databases made by this release or later
    # (every PostgreSQL one), which have them.
    have = (
        {"user_id", "client"}
        if _offline(conn)
        else {column["name"] for column in inspect(conn).get_columns(schema.revisions.name)}
    )
    for name in ("user_id", "client"):
        if name not in have:
            column = schema.revisions.c[name]
            kind = column.type.compile(dialect=conn.dialect)
            conn.exec_driver_sql(f"ALTER TABLE {schema.revisions.name} ADD COLUMN {name} {kind}")
    schema.web_sessions.create(conn, checkfirst=True)


def m006_blob_indexes(conn: Connection) -> None:
    # Whether a blob is still named is asked for every blob the sweeper, a purge or
    # retention may delete; without these indexes each question scans both tables.
    # 002 creates them on a new database (today's definition), so only where missing
    # (and not at all in offline SQL, for the reason given in 005).
    if _offline(conn):
        return
    for index in (
        *(i for i in schema.entries.indexes if i.name == "ix_entries_blob"),
        *(i for i in schema.revisions.indexes if i.name == "ix_revisions_blob"),
    ):
        index.create(conn, checkfirst=True)


def m007_work_leases(conn: Connection) -> None:
    # Every node runs the webhook dispatcher and the transfer workers: a lease says which
    # node holds a delivery or a job, and until when (storage.leases). 004 creates the
    # columns on a new database (today's definition), offline SQL included (see 005);
    # on an older one they are added.
    if _offline(conn):
        return
    for table in (schema.transfers, schema.webhook_deliveries):
        have = {column["name"] for column in inspect(conn).get_columns(table.name)}
        for name in ("lease_owner", "lease_until"):
            if name not in have:
                kind = table.c[name].type.compile(dialect=conn.dialect)
                conn.exec_driver_sql(f"ALTER TABLE {table.name} ADD COLUMN {name} {kind}")


def m008_rate_buckets(conn: Connection) -> None:
    # Rate limits and failed-login counts shared by every node (guard.shared_limits).
    schema.rate_buckets.create(conn, checkfirst=True)


def m009_upload_parts(conn: Connection) -> None:
    # Uploads in progress staged in the object store, part by part (uploads.shared_staging).
    schema.upload_parts.create(conn, checkfirst=True)


def m010_signing_keys(conn: Connection) -> None:
    # Signing keys and the master key's check value shared by the nodes of one
    # PostgreSQL database (identity.key_table, storage.encryption).
    schema.signing_keys.create(conn, checkfirst=True)
    schema.key_checks.create(conn, checkfirst=True)


MIGRATIONS: list[Named] = [
    ("001_identity", m001_identity),
    ("002_files", m002_files),
    ("003_security", m003_security),
    ("004_transfers_webhooks", m004_transfers_webhooks),
    ("005_undo_and_web", m005_undo_and_web),
    ("006_blob_indexes", m006_blob_indexes),
    ("007_work_leases", m007_work_leases),
    ("008_rate_buckets", m008_rate_buckets),
    ("009_upload_parts", m009_upload_parts),
    ("010_signing_keys", m010_signing_keys),
]
NAMES = [name for name, _fn in MIGRATIONS]


def run_migration(conn: Connection, name: str) -> None:
    """What the Alembic revision ``name`` does: the function, then the old record."""
    if name == NAMES[0]:
        _applied.create(conn, checkfirst=True)
    dict(MIGRATIONS)[name](conn)
    conn.execute(_applied.insert().values(name=name, applied_at=time.time()))


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


def alembic_config(
    *,
    connection: Connection | None = None,
    url: str | None = None,
    output: io.StringIO | None = None,
) -> Config:
    """Alembic's configuration, built here rather than read from an ``alembic.ini``:
    ``env.py`` takes the open ``connection`` (online) or the ``url`` (offline SQL)."""
    config = Config(output_buffer=output)
    config.set_main_option("script_location", str(SCRIPT_LOCATION))
    config.attributes["connection"] = connection
    config.attributes["url"] = url
    return config


@cache
def scripts() -> ScriptDirectory:
    """The revision files, checked against :data:`MIGRATIONS`: one each, in order."""
    directory = ScriptDirectory.from_config(alembic_config())
    chain = [script.revision for script in reversed(list(directory.walk_revisions()))]
    if chain != NAMES:
        raise RuntimeError(
            f"the Alembic revisions {chain} do not match the migrations {NAMES}: "
            f"every migration needs its revision file in {SCRIPT_LOCATION / 'versions'}"
        )
    return directory


def _legacy(conn: Connection) -> list[str]:
    if not conn.dialect.has_table(conn, _applied.name):
        return []
    return [row.name for row in conn.execute(select(_applied.c.name).order_by(_applied.c.name))]


def _current(conn: Connection) -> str | None:
    """The database's revision (None: a new database). :class:`NewerSchema` if this code
    does not know it; a database only the in-house runner recorded is read from its table."""
    heads = MigrationContext.configure(conn).get_current_heads()
    for head in heads:
        if head not in NAMES:
            raise NewerSchema(head)
    if heads:
        return max(heads, key=NAMES.index)
    done = _legacy(conn)
    check_known(done)
    if not done:
        return None
    # The old runner applied them in order, one transaction each: always a prefix.
    if done != NAMES[: len(done)]:
        raise RuntimeError(f"schema_migrations records {done}, not a prefix of {NAMES}")
    return done[-1]


def _after(current: str | None) -> list[str]:
    return NAMES[NAMES.index(current) + 1 :] if current else list(NAMES)


def applied(db: Database) -> list[str]:
    """The names of the migrations this database has applied, oldest first."""
    with db.read() as conn:
        current = _current(conn)
    return NAMES[: NAMES.index(current) + 1] if current else []


def pending(db: Database) -> list[str]:
    """The migrations still to apply, in order; :class:`NewerSchema` on a newer database."""
    with db.read() as conn:
        return _after(_current(conn))


def migrate(db: Database) -> list[str]:
    """Apply every pending migration in one transaction; returns the names applied.

    On PostgreSQL the transaction first takes the advisory lock, so of several nodes
    starting at once one migrates and the others wait, then find nothing to do; on
    SQLite it is an immediate transaction (and the data directory has one server).
    :class:`NewerSchema` is raised before anything is written.
    """
    scripts()
    # savepoints=True: on SQLite, BEGIN IMMEDIATE now, so DDL joins the transaction.
    with db.write(savepoints=True) as conn:
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql(LOCK_SQL)
        current = _current(conn)
        context = MigrationContext.configure(conn)
        if current and not context.get_current_heads():
            # Recorded by the in-house runner only: Alembic takes over from there.
            context.stamp(scripts(), current)
            log.info("stamped the database at revision %s (from schema_migrations)", current)
        todo = _after(current)
        if todo:
            command.upgrade(alembic_config(connection=conn), "head")
    for name in todo:
        log.info("applied migration %s", name)
    return todo


def offline_sql(url: str, start: str | None = None) -> str:
    """The SQL that upgrades a database of ``url``'s kind from ``start`` (None: a new
    database) to the newest revision, for a DBA to review and run; nothing connects."""
    scripts()
    if start is not None and start not in NAMES:
        raise ValueError(f"no migration {start!r}; known: {', '.join(NAMES)}")
    out = io.StringIO()
    command.upgrade(
        alembic_config(url=url, output=out), f"{start}:head" if start else "head", sql=True
    )
    return out.getvalue()
