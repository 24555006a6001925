"""``dropline-agent versions | restore | trash | undelete``: bringing back a file's earlier
version or a deleted file, by its local path, through the running agent.

The server does the undo; the file then comes back into the folder through ordinary
sync, and ``restore`` and ``undelete`` wait until it has (unless ``--no-wait``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from dropline.agent.cli_text import CliError, size_text, when_text
from dropline.agent.control.client import ControlClient
from dropline.agent.paths import AgentPaths

Command = Callable[[argparse.Namespace], int]

WAIT_SECONDS = 120.0
POLL_SECONDS = 0.25

VERSIONS_HELP = """\
List the versions the server keeps of a file in a synced folder, newest first: when
each was saved, by whom, its size, the program that saved it, and its revision id
(give that to 'restore --rev'). The current version is marked.

example:
  dropline-agent versions ~/Dropline/reports/q3.xlsx
"""

RESTORE_HELP = """\
Make an earlier version of a file the current one. The server keeps the version it
replaces, so a restore can itself be undone. Without --rev the newest earlier version
is restored. The file then comes back into the folder through ordinary sync; the
command waits until it has (--no-wait: do not wait).

examples:
  dropline-agent restore ~/Dropline/reports/q3.xlsx
  dropline-agent restore ~/Dropline/reports/q3.xlsx --rev 8b1f...
"""

TRASH_HELP = """\
List what was deleted from the synced folders, newest deletion first, with the local
path each item comes back to. A deleted folder is one line, with the number of files
that come back with it. '(taken)' marks an item whose place is in use again: bring it
back elsewhere with 'undelete PATH --to OTHER'.

examples:
  dropline-agent trash
  dropline-agent trash --folder ~/Dropline --search invoice
"""

UNDELETE_HELP = """\
Bring back a deleted file or folder by the local path it had (the most recently
deleted one when that path was deleted more than once). A folder comes back with
everything that was in it; missing parent folders are made again. The command waits
until it is back in the folder (--no-wait: do not wait).

examples:
  dropline-agent undelete ~/Dropline/reports/q3.xlsx
  dropline-agent undelete ~/Dropline/reports --to ~/Dropline/reports-old
"""


def add_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    """The four commands, under ``dropline-agent``'s subcommands."""

    def add(name: str, summary: str, text: str) -> argparse.ArgumentParser:
        cmd: argparse.ArgumentParser = sub.add_parser(
            name,
            help=summary,
            description=text,
            parents=[common],
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        cmd.add_argument("--json", action="store_true", help="print JSON")
        return cmd

    def waiting(cmd: argparse.ArgumentParser) -> None:
        cmd.add_argument(
            "--no-wait", action="store_true", help="return once the server has done it"
        )
        cmd.add_argument(
            "--timeout",
            type=_seconds,
            default=WAIT_SECONDS,
            metavar="SECONDS",
            help=f"how long to wait for the file to arrive (default {WAIT_SECONDS:.0f})",
        )

    versions = add("versions", "list the earlier versions of a file", VERSIONS_HELP)
    versions.add_argument("path", metavar="PATH", help="a file in a synced folder")

    restore = add("restore", "bring back an earlier version of a file", RESTORE_HELP)
    restore.add_argument("path", metavar="PATH", help="a file in a synced folder")
    restore.add_argument(
        "--rev", help="the version to restore (from 'versions'; default: the newest earlier one)"
    )
    waiting(restore)

    trash = add("trash", "list deleted files and folders", TRASH_HELP)
    trash.add_argument("--folder", metavar="LOCAL", help="only this synced folder")
    trash.add_argument("--search", metavar="TEXT", help="only names or paths containing TEXT")

    undelete = add("undelete", "bring back a deleted file or folder", UNDELETE_HELP)
    undelete.add_argument("path", metavar="PATH", help="the local path it had")
    undelete.add_argument("--to", metavar="LOCAL", help="bring it back here instead")
    waiting(undelete)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 < value <= 86400:
        raise argparse.ArgumentTypeError("give from 1 second to a day (86400)")
    return value


def _client(args: argparse.Namespace) -> ControlClient:
    return ControlClient(AgentPaths.resolve(args.home, args.config).socket)


def _local(path: str) -> str:
    """A path as the agent compares it: absolute, ``~`` expanded, not resolved."""
    return os.path.normpath(Path(path).expanduser().absolute())


def _print_json(obj: Any) -> None:
    print(json.dumps(obj, indent=2, ensure_ascii=False), flush=True)


def _note(text: str) -> None:
    """Progress for the person watching: on stderr, so stdout stays the result alone."""
    print(text, file=sys.stderr, flush=True)


# -- versions and restore -----------------------------------------------------------------


def cmd_versions(args: argparse.Namespace) -> int:
    path = _local(args.path)
    with _client(args) as c:
        result = c.call("versions.list", {"path": path})
    if args.json:
        _print_json(result)
        return 0
    revisions = result["revisions"]
    print(f"{result['file']['path']} ({result['file']['remote']} on the server)")
    rows = [
        (
            when_text(r["created_at"]),
            r["user"]["email"] if r["user"] else "-",
            size_text(r["size"]),
            r["client"] or "-",
            r["rev"],
            "(current)" if r["current"] else "",
        )
        for r in revisions
    ]
    _table(("WHEN", "WHO", "SIZE", "CLIENT", "REV", ""), rows, right=(2,))
    return 0


def _table(
    header: tuple[str, ...], rows: Sequence[tuple[str, ...]], right: tuple[int, ...]
) -> None:
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        cells = [
            cell.rjust(widths[i]) if i in right else cell.ljust(widths[i])
            for i, cell in enumerate(row)
        ]
        print("  ".join(cells).rstrip(), flush=True)


def cmd_restore(args: argparse.Namespace) -> int:
    path = _local(args.path)
    with _client(args) as c:
        listing = c.call("versions.list", {"path": path})
        revisions = listing["revisions"]
        rev = args.rev
        if rev is None:
            earlier = [r for r in revisions if not r["current"]]
            if not earlier:
                raise CliError(f"no earlier version of {path} is kept on the server")
            rev = earlier[0]["rev"]
        chosen = next((r for r in revisions if r["rev"] == rev), None)
        if chosen is not None and chosen["current"]:
            raise CliError(f"version {rev} is already the current one of {path}")
        entry = c.call("versions.restore", {"path": path, "rev": rev})["entry"]
        arrived = _arrive(c, args, path, entry, what=f"the version of {_when(chosen)}")
    if args.json:
        _print_json({"entry": entry, "local": path, "arrived": arrived})
    else:
        print(f"restored {path} to the version of {_when(chosen)}", flush=True)
    return 0


def _when(revision: dict[str, Any] | None) -> str:
    return when_text(revision["created_at"]) if revision else "the chosen revision"


# -- trash and undelete -------------------------------------------------------------------


def cmd_trash(args: argparse.Namespace) -> int:
    query = {"folder": _local(args.folder) if args.folder else None, "search": args.search}
    with _client(args) as c:
        items = c.call("trash.list", {k: v for k, v in query.items() if v is not None})["items"]
    if args.json:
        _print_json(items)
        return 0
    if not items:
        print("the trash is empty" if not query["search"] else "nothing in the trash matches")
        return 0
    rows = [(when_text(i["trashed_at"]), size_text(i["size"]), *_trash_place(i)) for i in items]
    _table(("DELETED", "SIZE", "PATH", ""), rows, right=(1,))
    return 0


def _trash_place(item: dict[str, Any]) -> tuple[str, str]:
    """Where an item comes back, and what to know about it."""
    notes = []
    if item["type"] == "folder":
        n = item["files"]
        notes.append(f"(folder, {n} file{'' if n == 1 else 's'})")
    if item["path_taken"]:
        notes.append("(taken)")
    slash = "/" if item["type"] == "folder" else ""
    return item["local"] + slash, " ".join(notes)


def cmd_undelete(args: argparse.Namespace) -> int:
    path = _local(args.path)
    to = _local(args.to) if args.to else None
    with _client(args) as c:
        folder = _folder_of(c, path)
        items = c.call("trash.list", {"folder": folder["local"]})["items"]
        item = next((i for i in items if i["local"] == path), None)
        if item is None:
            raise CliError(f"nothing in the trash at {path}")
        if item["path_taken"] and to is None:
            raise CliError(
                f"something is already at {path}; bring it back elsewhere with --to LOCAL"
            )
        args_ = {"id": item["id"]} if to is None else {"id": item["id"], "path": to}
        entry = c.call("trash.restore", args_)["entry"]
        where = to or path
        arrived = _arrive(c, args, where, entry, what="it", files=item["files"])
    if args.json:
        _print_json({"entry": entry, "local": where, "arrived": arrived})
    else:
        print(f"brought back {where}", flush=True)
    return 0


def _folder_of(c: ControlClient, path: str) -> dict[str, Any]:
    """The synced folder holding ``path``, or the error a person can act on."""
    for folder in c.call("folders.list")["folders"]:
        root = folder["local"]
        if path == root or path.startswith(root.rstrip("/") + "/"):
            return dict(folder)
    raise CliError(f"{path} is not inside a synced folder (see 'dropline-agent folders list')")


# -- waiting for the file to arrive through sync ------------------------------------------


def _arrive(
    c: ControlClient,
    args: argparse.Namespace,
    local: str,
    entry: dict[str, Any],
    *,
    what: str,
    files: int = 1,
) -> bool | None:
    """Wait until ``entry`` is at ``local`` (True), or say why it is not waited for (None).
    Past the timeout: a CliError, though the server has done its part."""
    if args.no_wait:
        return None
    folder = _folder_of(c, local)
    if folder["mode"] == "upload-only":
        _note(f"done on the server; {folder['local']} is an upload-only folder, so it stays there")
        return None
    _note(f"done on the server; waiting for {what} to arrive at {local} ...")
    deadline = time.monotonic() + args.timeout
    check = _FileCheck(local, entry) if entry["type"] == "file" else None
    while time.monotonic() < deadline:
        if check is not None and check.arrived():
            return True
        if check is None and _folder_arrived(c, local, files, folder["local"]):
            return True
        time.sleep(POLL_SECONDS)
    raise CliError(
        f"done on the server, but {local} has not arrived within {args.timeout:g} s; "
        "the agent keeps syncing it (see 'dropline-agent status' and 'dropline-agent issues')"
    )


class _FileCheck:
    """Has the local file the entry's content? Hashed again only when its stat changed."""

    def __init__(self, local: str, entry: dict[str, Any]) -> None:
        self.local = local
        self.size = int(entry["size"])
        self.sha256 = str(entry["sha256"])
        self._seen: tuple[int, int, int] | None = None

    def arrived(self) -> bool:
        try:
            st = os.stat(self.local)
        except OSError:
            return False
        stamp = (st.st_size, st.st_mtime_ns, st.st_ino)
        if st.st_size != self.size or stamp == self._seen:
            return False
        self._seen = stamp
        digest = hashlib.sha256()
        try:
            with open(self.local, "rb") as fh:
                while chunk := fh.read(4 * 1024 * 1024):
                    digest.update(chunk)
        except OSError:
            return False
        return digest.hexdigest() == self.sha256


def _folder_arrived(c: ControlClient, local: str, files: int, root: str) -> bool:
    """The folder is there with its files, or the sync folder has nothing left to do
    (hidden files, partial downloads among them, are not counted, and some files may be
    ones the agent never syncs, such as Thumbs.db)."""
    if not os.path.isdir(local):
        return False
    count = sum(1 for _d, _ds, names in os.walk(local) for n in names if not n.startswith("."))
    if count >= files:
        return True
    status = c.call("status")
    mine = next((f for f in status["folders"] if f["local"] == root), None)
    return bool(mine is not None and mine["state"] == "idle" and mine["pending"] == 0)


COMMANDS: dict[str, Command] = {
    "versions": cmd_versions,
    "restore": cmd_restore,
    "trash": cmd_trash,
    "undelete": cmd_undelete,
}
