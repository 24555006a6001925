"""``dropline-server import SRC``: move a single node's backup (``backup``'s output) into
the PostgreSQL database and the blob store this command's settings name, for a move to
several nodes. Run once, with the nodes' settings, before the nodes start."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from dropline.server.cli._common import CliError, add_data_dir, say, settings
from dropline.server.identity.key_import import KeyFileError, signing_key_rows
from dropline.server.storage.blob_url import ENV_BLOB_URL, open_blob_store
from dropline.server.storage.db import Database
from dropline.server.storage.transplant import import_backup

if TYPE_CHECKING:
    Sub = argparse._SubParsersAction[argparse.ArgumentParser]


def register(sub: Sub) -> None:
    p = sub.add_parser(
        "import",
        help="move a backup of a single node into the PostgreSQL database and blob store "
        "that DROPLINE_DATABASE_URL and DROPLINE_BLOB_URL name (an empty target)",
    )
    add_data_dir(p)
    p.add_argument("src", type=Path, help="a directory written by backup")
    p.set_defaults(func=run, services=False)


def run(args: argparse.Namespace) -> int:
    s = settings(args)
    if not s.database_url.startswith("postgresql"):
        raise CliError(
            "import moves a backup into the nodes' PostgreSQL database: set "
            "DROPLINE_DATABASE_URL (to bring a backup back onto one node, use restore)"
        )
    if s.blob_url == s.blob_dir.absolute().as_uri():
        raise CliError(
            f"set {ENV_BLOB_URL} to the blob store every node uses (s3://BUCKET/PREFIX): "
            "the blobs would otherwise land in this machine's data directory"
        )
    store = open_blob_store(s.blob_url)
    db = Database(s.database_url)
    try:
        done = import_backup(args.src, db, store, signing_key_rows, say)
    except KeyFileError as exc:
        raise CliError(str(exc)) from exc
    finally:
        db.dispose()
    m = done.manifest
    tenants = done.rows.get("tenants", 0)
    say(
        f"imported the backup of {m.created_at} (Dropline {m.version}) into the database and "
        f"{s.blob_url}: {tenants} tenants, {sum(done.rows.values())} rows, {done.blobs} blobs, "
        f"{done.signing_keys} signing keys"
    )
    if done.uploads_left:
        say(
            f"{done.uploads_left} uploads in progress were not moved; "
            "their clients start them again"
        )
    for name in m.env_keys:
        say(f"note: the old server took {name} from its environment: give every node the same")
    say("next: start the nodes with these settings (dropline-server serve)")
    return 0
