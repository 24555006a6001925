"""One round of a folder's loop: take the queued paths, look at them (stat; hash only
what the base cannot vouch for; hold what has not settled), and plan.

It works on the loop through :class:`dropline.sync.folder_state.FolderState`.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime

from dropline.sync import fs, planner
from dropline.sync.folder_actions import carry_out
from dropline.sync.folder_state import FolderState
from dropline.sync.journal import QueueItem
from dropline.sync.records import (
    Base,
    DeleteLocal,
    DeleteRemote,
    Download,
    Local,
    PathState,
    Plan,
    RecordBase,
    Remote,
    Upload,
)
from dropline.sync.scanner import FileBusyError, hash_file, walk
from dropline.sync.types import Direction, FolderMode

ROUND_SIZE = 5_000  # queued paths planned together
# Seconds without a new delete before deletes are carried out: longer than the watcher's
# longest hand-on delay (a second), so a delete that goes on for a while is seen whole.
DELETE_SETTLE = 2.0
RETRY_CAP = 300.0  # seconds: the longest wait before a failed path is tried again


async def run_round(folder: FolderState) -> None:
    now = time.monotonic()
    busy = folder.in_flight.keys() | {p for p, until in folder.holds.items() if until > now}
    items = folder.journal.pending(folder.id, ROUND_SIZE, busy)
    if not items:
        return
    for item in items:
        folder.holds.pop(item.path, None)
    states, waiting = await _look(folder, items)
    plan = planner.plan(
        states.values(),
        mode=folder.spec.mode,
        local_edits=folder.spec.local_edits,
        host=folder.hooks.host,
        now=datetime.now(),
        total_files=folder.journal.count_files(folder.id),
        allow_mass_delete=folder.allow_mass_delete,
        case_sensitive=folder.case_sensitive,
    )
    if plan.mass_delete is not None:
        if folder.restore_deletes:
            _restore(folder, plan, states)
            return
        folder.guard = plan.mass_delete.kind
        p = plan.mass_delete
        folder.raise_issue(p.path, p.kind, p.message, p.hint)
        return
    confirmed, folder.allow_mass_delete = folder.allow_mass_delete, False
    if not confirmed:
        waiting |= _hold_deletes(folder, plan, now)
    await carry_out(folder, plan, {i.path: i for i in items}, states, waiting)
    structural = any(not isinstance(a, Upload | Download | RecordBase) for a in plan.actions)
    if len(items) >= ROUND_SIZE or plan.deferred or structural:
        folder.queue_changed()  # more queued, or follow-ups of what just ran


def _hold_deletes(folder: FolderState, plan: Plan, now: float) -> set[str]:
    """Deletes wait until none has come for :data:`DELETE_SETTLE` seconds, then go
    together. A file manager deleting thousands of files takes seconds, and the planner's
    guard must see such a mass delete whole, not a harmless-looking slice per round.
    Returns the paths held back (they stay queued)."""
    deletes = {a.path for a in plan.actions if isinstance(a, DeleteRemote | DeleteLocal)}
    if not deletes:
        if now >= folder.deletes_due:
            folder.held_deletes.clear()
        return set()
    if not deletes - folder.held_deletes and now >= folder.deletes_due:
        folder.held_deletes.clear()  # quiet long enough: these go now
        return set()
    if deletes - folder.held_deletes:
        folder.deletes_due = now + DELETE_SETTLE  # more are coming: wait for the rest
    folder.held_deletes |= deletes
    for path in folder.held_deletes:
        folder.holds[path] = folder.deletes_due
    plan.actions = [a for a in plan.actions if not isinstance(a, DeleteRemote | DeleteLocal)]
    return deletes


async def _look(
    folder: FolderState, items: list[QueueItem]
) -> tuple[dict[str, PathState], set[str]]:
    """Build the three states of every queued path (and what hangs below folders)."""
    journal, root = folder.journal, folder.root
    remote_known = {i.path: i.remote for i in items if i.remote_known}
    states: dict[str, PathState] = {}
    to_hash: list[tuple[str, Local]] = []
    waiting: set[str] = set()
    settle = folder.hooks.settings.stable_seconds
    wall = time.time()

    def add(path: str, base: Base | None) -> None:
        if path in states or folder.ignore.ignored_any(path):
            return
        try:
            st = fs.stat(root, path)
        except fs.NotRegularError:
            return
        except OSError as exc:
            folder.retry_later(
                path,
                "unreadable",
                f"Cannot read this: {exc.strerror}.",
                "Check its permissions; it is tried again.",
            )
            waiting.add(path)
            return
        local = None if st is None else Local(st.is_dir, st.size, st.mtime_ns, st.inode)
        if local is not None and not local.is_dir:
            if base is not None and not base.is_dir and planner.same_stat(local, base):
                local = Local(False, local.size, local.mtime_ns, local.inode, base.sha256)
            elif folder.spec.mode is not FolderMode.DOWNLOAD_ONLY or base is not None:
                closed = path in folder.closed
                folder.closed.discard(path)
                if not closed and wall - local.mtime_ns / 1e9 < settle:
                    folder.holds[path] = time.monotonic() + settle
                    waiting.add(path)
                    return
                cached = _known_hash(folder, path, local)
                if cached is not None:
                    local = cached
                else:
                    to_hash.append((path, local))
        if path in remote_known:
            remote = remote_known[path]
        elif base is not None:
            remote = Remote(base.remote_id, base.is_dir, base.size, base.sha256, base.rev)
        else:
            remote = None
        states[path] = PathState(path, base, local, remote)

    for item in items:
        add(item.path, journal.get_base(folder.id, item.path))
    for path, state in list(states.items()):
        base, local, remote = state.base, state.local, state.remote
        if (
            base is not None
            and base.is_dir
            and (local is None or not local.is_dir or remote is None or not remote.is_dir)
        ):
            for child, child_base in journal.descendants(folder.id, path).items():
                add(child, child_base)
        if local is not None and local.is_dir and base is None:
            for r in walk(root, journal.base_reader(folder.id), folder.ignore, path):
                if r.error is None:
                    add(r.path, r.base)
        if remote is None and path in remote_known and base is not None and base.is_dir:
            for child in journal.descendants(folder.id, path):
                remote_known.setdefault(child, None)
                if child in states:
                    s = states[child]
                    states[child] = PathState(child, s.base, s.local, None)
    if to_hash:
        hashed = await asyncio.to_thread(_hash_all, folder, to_hash)
        for path, result in hashed.items():
            s = states[path]
            if isinstance(result, Local):
                states[path] = PathState(path, s.base, result, s.remote)
                continue
            del states[path]
            waiting.add(path)
            if isinstance(result, FileBusyError | FileNotFoundError):
                folder.holds[path] = time.monotonic() + max(settle, 1.0)
            else:
                folder.retry_later(
                    path,
                    "unreadable",
                    f"Cannot read this file: {result}.",
                    "Check its permissions; it is tried again.",
                )
    return states, waiting


def _known_hash(folder: FolderState, path: str, local: Local) -> Local | None:
    """A hash already computed for this very file: earlier in this run (an upload that
    failed and is tried again), or by an unfinished upload before a restart."""
    cached = folder.hashes.get(path)
    if cached is not None and (cached.size, cached.mtime_ns, cached.inode) == (
        local.size,
        local.mtime_ns,
        local.inode,
    ):
        return cached
    row = folder.journal.transfer(folder.id, path, Direction.UP)
    if row is None or row.sha256 is None:
        return None
    if (row.size, row.mtime_ns, row.inode) != (local.size, local.mtime_ns, local.inode):
        return None
    return Local(False, local.size, local.mtime_ns, local.inode, row.sha256)


def _hash_all(folder: FolderState, files: list[tuple[str, Local]]) -> dict[str, Local | OSError]:
    out: dict[str, Local | OSError] = {}
    counters = folder.hooks.shared.counters

    def count(n: int) -> None:
        counters.bytes_hashed += n

    for path, local in files:
        try:
            out[path] = folder.hashes[path] = hash_file(folder.root, path, local, count)
        except OSError as exc:
            out[path] = exc
    return out


def _restore(folder: FolderState, plan: Plan, states: dict[str, PathState]) -> None:
    """The user chose to bring back what a mass delete removed, instead of deleting."""
    folder.restore_deletes = False
    with folder.journal.transaction():
        for s in states.values():
            if s.base is None:
                continue
            if s.local is None and s.remote is not None:  # gone here: download again
                folder.journal.put_base(folder.id, s.path, None)
                folder.journal.enqueue_remote(folder.id, [(s.path, s.remote)])
            elif s.remote is None and s.local is not None:  # gone there: upload again
                folder.journal.put_base(folder.id, s.path, None)
                folder.journal.enqueue_local(folder.id, [s.path])
    folder.queue_changed()
