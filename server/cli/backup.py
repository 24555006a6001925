"""``dropline-server backup DEST`` and ``restore SRC``: an online copy of the data
directory (database, blobs, keys, uploads in progress) and its way back."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from dropline.server.cli._common import CliError, add_data_dir, say, settings
from dropline.server.settings import Settings
from dropline.server.storage.backup import take_backup
from dropline.server.storage.migrations import MIGRATIONS
from dropline.server.storage.restore import restore_backup

if TYPE_CHECKING:
    Sub = argparse._SubParsersAction[argparse.ArgumentParser]


def register(sub: Sub) -> None:
    p = sub.add_parser(
        "backup", help="copy the data directory into DEST, also while the server runs"
    )
    add_data_dir(p)
    p.add_argument("dest", type=Path, help="a new or empty directory")
    p.set_defaults(func=backup, services=False)
    p = sub.add_parser("restore", help="restore a backup into the data directory (server stopped)")
    add_data_dir(p)
    p.add_argument("src", type=Path, help="a directory written by backup")
    p.add_argument(
        "--force", action="store_true", help="replace what a non-empty data directory holds"
    )
    p.set_defaults(func=restore, services=False)


def _embedded(s: Settings) -> None:
    # The data directory is all a backup copies; a database elsewhere has its own tools.
    if s.database_url != f"sqlite:///{s.database_path}":
        raise CliError(
            "backup and restore cover the embedded database of the data directory; "
            "with DROPLINE_DATABASE_URL, back the database up with its own tools"
        )


def backup(args: argparse.Namespace) -> int:
    s = settings(args)
    _embedded(s)
    manifest = take_backup(s.data_dir, args.dest, say)
    c = manifest.counts
    say(
        f"backup of {s.data_dir} written to {args.dest}: {c['blobs']} blobs, "
        f"{c['keys']} key files, {c['uploads']} uploads in progress; "
        f"database sha256 {manifest.database_sha256}"
    )
    for name in manifest.env_keys:
        say(f"note: {name} is set in the environment, not in the backup: keep it with the backup")
    return 0


def restore(args: argparse.Namespace) -> int:
    s = settings(args)
    _embedded(s)
    manifest = restore_backup(args.src, s.data_dir, force=args.force, say=say)
    c = manifest.counts
    say(
        f"restored the backup of {manifest.created_at} (Dropline {manifest.version}) "
        f"into {s.data_dir}: {c['blobs']} blobs, {c['keys']} key files, "
        f"{c['uploads']} uploads in progress"
    )
    todo = [name for name, _fn in MIGRATIONS if name not in set(manifest.migrations)]
    if todo:
        say(f"the server applies {len(todo)} migrations at its next start ({', '.join(todo)})")
    for name in manifest.env_keys:
        say(f"note: the backed-up server took {name} from its environment: set the same value")
    return 0
