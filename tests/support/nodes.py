"""Several ``dropline-server serve`` nodes on one PostgreSQL database, as behind a load
balancer: each its own data dir, one blob store and one master key for all of them,
and an API key made in the shared database."""

from __future__ import annotations

import base64
import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from dropline.server.identity.accounts import Identity
from dropline.server.storage.db import Database
from dropline.server.storage.migrations import migrate
from tests.support.live import ServerProcess


def migrated_with_key(database_url: str, scopes: tuple[str, ...]) -> str:
    """Migrate the database, add tenant acme with alice, and return a new API key of hers."""
    db = Database(database_url)
    try:
        migrate(db)
        identity = Identity(db)
        identity.create_tenant("acme")
        identity.create_user("acme", "alice@example.com", "correct horse battery staple")
        _key_id, key = identity.create_api_key("acme", "alice@example.com", scopes)
    finally:
        db.dispose()
    return key


@contextlib.contextmanager
def running_nodes(
    base: Path, database_url: str, count: int, env: dict[str, str] | None = None
) -> Iterator[list[ServerProcess]]:
    shared = {
        "DROPLINE_DATABASE_URL": database_url,
        "DROPLINE_BLOB_URL": (base / "blobs").as_uri(),
        "DROPLINE_MASTER_KEY": base64.b64encode(os.urandom(32)).decode(),
        **(env or {}),
    }
    started = [ServerProcess(base / f"node-{n}", extra_env=shared) for n in range(1, count + 1)]
    try:
        for node in started:
            node.start(timeout=60)
        yield started
    finally:
        for node in started:
            node.stop()
