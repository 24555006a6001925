"""``dropline-server sweep``: remove, on demand, what the server's sweeper removes on its
schedule; ``--dry-run`` lists it and the bytes it would free, and removes nothing."""

from __future__ import annotations

import argparse
import re
import sys
import textwrap
from typing import TYPE_CHECKING

from sqlalchemy.exc import SQLAlchemyError

from dropline.server.cli._common import CliError, add_data_dir, emit_json, say, settings
from dropline.server.files.sweeper import SweepReport
from dropline.server.http.sweeping import build_sweeper
from dropline.server.storage.blob_url import open_stores
from dropline.server.storage.db import Database
from dropline.server.storage.migrations import migrate

if TYPE_CHECKING:
    Sub = argparse._SubParsersAction[argparse.ArgumentParser]

DESCRIPTION = """\
Remove what nothing needs any more:

  - tus uploads that expired (their rows and staged bytes), and files in the
    upload directory that no upload owns;
  - share links whose time is up (their transfer is marked expired), and the
    earlier versions a purge kept only because such a link served them;
  - blob files that no file, version or live share link refers to, and the blob
    store's leftovers (temporary copies, checksums without their blob).

Only what is older than the grace period is touched, so an upload, publish or
download in flight never is. The running server does the same every
DROPLINE_HOUSEKEEPING_SECONDS (default 3600); this command is safe to run while
it serves.
"""

EPILOG = """\
output:
  One line per item on stdout: what, its name, and the bytes it frees; then a
  summary line on stderr. With --json, one JSON document on stdout instead:
  {"dry_run", "grace_seconds", "bytes", "counts": {kind: n}, "items": [...]}.
  Kinds: upload, staged-file, share-link, kept-revision, blob, leftover.

exit status:
  0  the sweep ran (whether or not anything was found)
  1  it could not run: no data directory, a database error, a disk error
  2  wrong usage

environment:
  DROPLINE_DATA_DIR            the data directory (or --data-dir)
  DROPLINE_SWEEP_GRACE_SECONDS the default grace period (3600)
  DROPLINE_DATABASE_URL        a database other than the embedded one

examples:
  dropline-server sweep --dry-run
  dropline-server sweep --grace 1d --json
"""

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def grace_seconds(text: str) -> float:
    """``90``, ``90s``, ``15m``, ``2h``, ``1d``: a duration in seconds."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text)
    if not match:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a duration: give seconds or a number with s, m, h or d"
        )
    return float(match.group(1)) * _UNITS[match.group(2) or "s"]


def register(sub: Sub) -> None:
    p = sub.add_parser(
        "sweep",
        help="remove expired uploads, ended share links and unreferenced blobs",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_data_dir(p)
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="list what would be removed and the bytes it would free; remove nothing",
    )
    p.add_argument(
        "--grace",
        type=grace_seconds,
        metavar="DURATION",
        help="touch only what is older than this (such as 3600, 30m, 2h, 1d; "
        "default DROPLINE_SWEEP_GRACE_SECONDS, one hour)",
    )
    p.add_argument("--json", action="store_true", help="one JSON document on stdout")
    p.set_defaults(func=sweep, services=False)


def human(size: int) -> str:
    value = float(size)
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{size} bytes" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def sweep(args: argparse.Namespace) -> int:
    s = settings(args)
    sqlite = s.database_url == f"sqlite:///{s.database_path}"
    if not s.data_dir.is_dir() or (sqlite and not s.database_path.is_file()):
        raise CliError(f"no Dropline data directory at {s.data_dir} (set --data-dir)")
    db = Database(s.database_url)
    try:
        migrate(db)
        sweeper = build_sweeper(s, db, open_stores(s.blob_url), grace=args.grace)
        report = sweeper.run(dry_run=args.dry_run)
    except SQLAlchemyError as exc:
        reason = getattr(exc, "orig", None) or exc
        raise CliError(f"the database could not be swept: {reason}") from None
    finally:
        db.dispose()
    grace = s.sweep_grace_seconds if args.grace is None else args.grace
    if args.json:
        emit_json(
            {
                "dry_run": report.dry_run,
                "grace_seconds": grace,
                "bytes": report.bytes,
                "counts": report.counts(),
                "items": [{"kind": i.kind, "name": i.name, "bytes": i.size} for i in report.items],
            }
        )
    else:
        for item in report.items:
            print(f"{item.kind}\t{item.name}\t{item.size}")
    say(_summary(report))
    sys.stdout.flush()
    return 0


def _summary(report: SweepReport) -> str:
    verb = "would remove" if report.dry_run else "removed"
    if not report.items:
        return f"nothing to sweep ({'dry run' if report.dry_run else 'nothing removed'})"
    counts = ", ".join(f"{n} {kind}" for kind, n in report.counts().items())
    return textwrap.shorten(
        f"{verb} {counts}: {human(report.bytes)} ({report.bytes} bytes)", width=200
    )


__all__ = ["grace_seconds", "register"]
