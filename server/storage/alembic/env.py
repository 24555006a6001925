"""Alembic's environment: configured by ``storage.migrations.alembic_config`` (no
``alembic.ini``), online on the connection it is given, offline on a URL's dialect."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine, text

from dropline.server.settings import Settings
from dropline.server.storage.migrations import LOCK_SQL

config = context.config


def _url() -> str:
    url = config.attributes.get("url")
    return str(url) if url else Settings.from_env().database_url


def _run(conn: Connection) -> None:
    context.configure(connection=conn)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    conn = config.attributes.get("connection")
    if conn is not None:
        # storage.migrations.migrate: its transaction, lock and checks already taken.
        _run(conn)
        return
    # Alembic's own command line: the database the settings name, under the same lock.
    engine = create_engine(_url())
    try:
        with engine.begin() as own:
            if own.dialect.name == "postgresql":
                own.execute(text(LOCK_SQL))
            _run(own)
    finally:
        engine.dispose()


def run_offline() -> None:
    url = _url()
    context.configure(url=url, literal_binds=True, dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        if url.startswith("postgresql"):
            # A DBA running the script waits for a node that is migrating, and the reverse.
            context.execute(LOCK_SQL)
        context.run_migrations()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
