"""Decides what to do, and nothing else: (journal base, local, remote) in, actions out.

Pure: no I/O, no clock (the caller passes ``now`` for conflict names). One call plans
a batch of paths so it can see across them: a delete plus a create of the same inode
(or the same content) is a move; a folder's root vanishing or more than half its
files disappearing at once is a mass delete, answered with a pause, not deletes.

What it takes and gives (the three states of a path, the actions, the plan) lives in
:mod:`dropline.sync.records`.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from dropline.sync.conflicts import conflict_path
from dropline.sync.records import (
    NONE_REV,
    Action,
    Base,
    ConflictCopy,
    DeleteLocal,
    DeleteRemote,
    Download,
    Local,
    MkdirLocal,
    MkdirRemote,
    MoveLocal,
    MoveRemote,
    PathState,
    Plan,
    Problem,
    RecordBase,
    RecordMove,
    Remote,
    Upload,
)
from dropline.sync.types import FolderMode, LocalEdits

MASS_DELETE_FRACTION = 0.5  # deleting more than this share of a folder's files pauses it
MASS_DELETE_MIN = 10  # ...once at least this many files go (deleting one of two is not mass)


def _phase(action: Action) -> int:
    if isinstance(action, RecordBase):
        return 0
    if isinstance(
        action, ConflictCopy | MoveRemote | MoveLocal | RecordMove | MkdirRemote | MkdirLocal
    ):
        return 1
    if isinstance(action, Upload | Download):
        return 2
    if isinstance(action, DeleteRemote):
        return 4 if action.base.is_dir else 3
    return 4 if action.expect.is_dir else 3


def _depth(path: str) -> int:
    return path.count("/")


def shown(name: str) -> str:
    """A name as a person should read it in a message: in quotes, backslashes as they
    are, and only characters that cannot be printed spelled out (``\\x01``)."""
    visible = "".join(
        c if c.isprintable() else (f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}")
        for c in name
    )
    return f"\u201c{visible}\u201d"


def invalid_name_reason(name: str) -> str | None:
    """Why the server would refuse ``name`` (mirrors docs/api.md), or None."""
    if name in ("", ".", ".."):
        return "is reserved"
    if "\\" in name or "/" in name:
        return "contains a slash or backslash"
    if any(unicodedata.category(c) == "Cc" for c in name):  # C0, DEL and C1, as the server
        return "contains control characters"
    if any(0xD800 <= ord(c) <= 0xDFFF for c in name):
        return "is not valid UTF-8"
    if len(name.encode("utf-8")) > 255:
        return "is longer than 255 bytes"
    return None


def local_changed(s: PathState) -> bool:
    if s.base is None:
        return s.local is not None
    if s.local is None or s.local.is_dir != s.base.is_dir:
        return True
    if s.local.is_dir:
        return False
    if same_stat(s.local, s.base):
        return False
    return s.local.sha256 != s.base.sha256


def remote_changed(s: PathState) -> bool:
    if s.base is None:
        return s.remote is not None
    if s.remote is None:
        return True
    if s.remote.is_dir != s.base.is_dir:
        return True
    if s.remote.is_dir:
        return s.remote.id != s.base.remote_id
    return s.remote.rev != s.base.rev


def same_stat(local: Local, base: Base) -> bool:
    return local.size == base.size and local.mtime_ns == base.mtime_ns and local.inode == base.inode


def base_of(local: Local, remote: Remote) -> Base:
    return Base(
        is_dir=local.is_dir,
        size=local.size,
        mtime_ns=local.mtime_ns,
        inode=local.inode,
        sha256=local.sha256 if not local.is_dir else None,
        remote_id=remote.id,
        rev=remote.rev,
    )


def _same_content(local: Local, remote: Remote) -> bool:
    if local.is_dir or remote.is_dir:
        return local.is_dir == remote.is_dir
    return local.sha256 is not None and local.sha256 == remote.sha256


@dataclass
class _Ctx:
    mode: FolderMode
    local_edits: LocalEdits
    host: str
    now: datetime
    taken: set[str]
    plan: Plan


def _conflict(ctx: _Ctx, s: PathState, kind_message: str, hint: str) -> None:
    assert s.local is not None
    copy = conflict_path(s.path, ctx.host, ctx.now, lambda p: p in ctx.taken)
    ctx.taken.add(copy)
    ctx.plan.actions.append(ConflictCopy(s.path, copy, s.local))
    ctx.plan.problems.append(Problem(s.path, "conflict", kind_message, hint, (s.path, copy)))


def _plan_one(ctx: _Ctx, s: PathState) -> None:
    mode = ctx.mode
    lc = local_changed(s)
    rc = remote_changed(s)
    act = ctx.plan.actions
    base, local, remote = s.base, s.local, s.remote

    if not lc and not rc:
        if base is not None and local is not None and not local.is_dir:
            if not same_stat(local, base):  # touched, same content: remember the new stat
                act.append(
                    RecordBase(
                        s.path,
                        Base(
                            False,
                            local.size,
                            local.mtime_ns,
                            local.inode,
                            base.sha256,
                            base.remote_id,
                            base.rev,
                        ),
                    )
                )
        elif base is not None and local is not None and local.inode != base.inode:
            act.append(
                RecordBase(
                    s.path,
                    Base(True, 0, local.mtime_ns, local.inode, None, base.remote_id, base.rev),
                )
            )
        return

    if mode is FolderMode.UPLOAD_ONLY:
        _plan_upload_only(ctx, s, lc, rc)
        return
    if mode is FolderMode.DOWNLOAD_ONLY and lc and _plan_download_only_local(ctx, s, rc):
        return

    if lc and not rc:
        assert base is None or remote is not None
        if local is None:
            assert base is not None
            act.append(DeleteRemote(s.path, base))
        elif base is not None and base.is_dir != local.is_dir:
            _conflict(
                ctx,
                s,
                "This item changed between file and folder.",
                "Both versions were kept; remove the one you do not need.",
            )
        elif local.is_dir:
            act.append(MkdirRemote(s.path, local))
        else:
            act.append(Upload(s.path, local, base.rev if base is not None else NONE_REV))
        return

    if rc and not lc:
        if remote is None:
            if local is not None:
                act.append(DeleteLocal(s.path, local))
            else:
                act.append(RecordBase(s.path, None))
        elif local is not None and local.is_dir != remote.is_dir:
            _conflict(
                ctx,
                s,
                "This item changed between file and folder on the server.",
                "Both versions were kept; remove the one you do not need.",
            )
        elif remote.is_dir:
            if local is not None:
                act.append(RecordBase(s.path, base_of(local, remote)))
            else:
                act.append(MkdirLocal(s.path, remote))
        else:
            act.append(Download(s.path, remote, local))
        return

    # Both sides changed.
    if local is None and remote is None:
        act.append(RecordBase(s.path, None))
    elif local is None:
        assert remote is not None
        # Deleted here, edited there: the edit wins, nothing is lost.
        act.append(MkdirLocal(s.path, remote) if remote.is_dir else Download(s.path, remote, None))
    elif remote is None:
        # Edited here, deleted there: the edit wins and goes up as a new file.
        act.append(MkdirRemote(s.path, local) if local.is_dir else Upload(s.path, local, NONE_REV))
    elif _same_content(local, remote):
        act.append(RecordBase(s.path, base_of(local, remote)))
    else:
        _conflict(
            ctx,
            s,
            "This file was changed here and on the server.",
            "Both versions were kept: compare them and keep the right one.",
        )


def _plan_upload_only(ctx: _Ctx, s: PathState, lc: bool, rc: bool) -> None:
    act = ctx.plan.actions
    local, remote, base = s.local, s.remote, s.base
    if local is None:
        # A drop folder never deletes on the server: the file was handed over.
        act.append(RecordBase(s.path, None))
        return
    if not lc:
        return
    if rc and remote is not None:
        if _same_content(local, remote):
            act.append(RecordBase(s.path, base_of(local, remote)))
        else:
            _conflict(
                ctx,
                s,
                "The server already has a different file with this name.",
                "Your file is uploaded under the conflict-copy name.",
            )
        return
    if local.is_dir:
        act.append(MkdirRemote(s.path, local))
    else:
        if_rev = base.rev if base is not None and not rc else NONE_REV
        act.append(Upload(s.path, local, if_rev))


def _plan_download_only_local(ctx: _Ctx, s: PathState, rc: bool) -> bool:
    """Local edits in a download-only folder never go up. True when handled here."""
    act, local, remote, base = ctx.plan.actions, s.local, s.remote, s.base
    restore = ctx.local_edits is LocalEdits.RESTORE
    if base is None and (remote is None or local is None):
        return True  # a file only here: it is the user's, left alone and not uploaded
    if local is None:
        if remote is None:
            act.append(RecordBase(s.path, None))
        elif restore:
            act.append(
                MkdirLocal(s.path, remote) if remote.is_dir else Download(s.path, remote, None)
            )
        else:
            ctx.plan.problems.append(
                Problem(
                    s.path,
                    "local-delete",
                    "Deleted here, but this folder only receives files.",
                    "The file stays on the server; it comes back if you resume or retry.",
                )
            )
        return True
    if remote is None:
        act.append(RecordBase(s.path, None))  # gone on the server: the local copy is the user's
        return True
    if _same_content(local, remote):
        act.append(RecordBase(s.path, base_of(local, remote)))
        return True
    if restore:
        _conflict(
            ctx,
            s,
            "Changed here, but this folder only receives files.",
            "Your version was kept as a conflicted copy; the server's version is back.",
        )
    else:
        ctx.plan.problems.append(
            Problem(
                s.path,
                "local-edit",
                "Changed here, but this folder only receives files.",
                "Your change is not uploaded. Undo it or move the file elsewhere.",
            )
        )
    return True


def _detect_moves(states: Sequence[PathState], mode: FolderMode) -> tuple[list[Action], set[str]]:
    """Pairs of (gone here, new here) that are one move, sent as a server move; and
    (gone there, new there) with the same server id, done as a local rename."""
    actions: list[Action] = []
    consumed: set[str] = set()
    if mode is FolderMode.UPLOAD_ONLY:
        return actions, consumed
    _moved_on_both_sides(states, actions, consumed)

    if mode is FolderMode.TWO_WAY:
        gone = [
            s for s in states if s.base is not None and s.local is None and not remote_changed(s)
        ]
        new = [s for s in states if s.base is None and s.remote is None and s.local is not None]
        by_inode = {(s.base.inode, s.base.is_dir): s for s in gone if s.base is not None}
        by_hash = {
            s.base.sha256: s
            for s in gone
            if s.base is not None and not s.base.is_dir and s.base.size > 0
        }
        for n in sorted(new, key=lambda s: _depth(s.path)):
            assert n.local is not None
            if any(_under(n.path, c) for c in consumed):
                continue
            src = by_inode.get((n.local.inode, n.local.is_dir))
            if (src is None or src.path in consumed) and not n.local.is_dir:
                src = by_hash.get(n.local.sha256) if n.local.sha256 else None
            if src is None or src.path in consumed or any(_under(src.path, c) for c in consumed):
                continue
            assert src.base is not None
            actions.append(MoveRemote(src.path, n.path, src.base, n.local))
            consumed.update((src.path, n.path))

    gone_r = [
        s
        for s in states
        if s.base is not None and s.remote is None and s.local is not None and not local_changed(s)
    ]
    new_r = [s for s in states if s.base is None and s.local is None and s.remote is not None]
    by_id = {s.base.remote_id: s for s in gone_r if s.base is not None}
    for n in sorted(new_r, key=lambda s: _depth(s.path)):
        assert n.remote is not None
        if any(_under(n.path, c) for c in consumed):
            continue
        src = by_id.get(n.remote.id)
        if src is None or src.path in consumed or any(_under(src.path, c) for c in consumed):
            continue
        assert src.local is not None
        actions.append(MoveLocal(src.path, n.path, src.local, n.remote))
        consumed.update((src.path, n.path))
    return actions, consumed


def _moved_on_both_sides(
    states: Sequence[PathState], actions: list[Action], consumed: set[str]
) -> None:
    """Gone from its old name on both sides, and at a new name on both sides with the same
    server id: a move this agent made on one side and carried to the other, killed
    before its journal recorded it. Only the journal follows (everything under the new
    name is then looked at again). Left as a delete and a new path, the files renamed
    inside a moved folder went up as new ones beside their old names on the server."""
    gone = {
        s.base.remote_id: s
        for s in states
        if s.base is not None and s.local is None and s.remote is None
    }
    arrived = [s for s in states if s.base is None and s.local is not None and s.remote is not None]
    for n in sorted(arrived, key=lambda s: _depth(s.path)):
        assert n.local is not None and n.remote is not None
        src = gone.get(n.remote.id)
        if src is None or src.base is None or any(_under(n.path, c) for c in consumed):
            continue
        if src.base.is_dir != n.local.is_dir or n.local.is_dir != n.remote.is_dir:
            continue
        if not n.local.is_dir and not _same_content(n.local, n.remote):
            continue
        moved = Base(
            n.local.is_dir,
            n.remote.size,
            n.local.mtime_ns,
            n.local.inode,
            n.remote.sha256,
            n.remote.id,
            n.remote.rev,
        )
        actions.append(RecordMove(src.path, n.path, moved))
        consumed.update((src.path, n.path))


def _under(path: str, ancestor: str) -> bool:
    return path == ancestor or path.startswith(ancestor + "/")


def plan(
    states: Iterable[PathState],
    *,
    mode: FolderMode = FolderMode.TWO_WAY,
    local_edits: LocalEdits = LocalEdits.RESTORE,
    host: str = "host",
    now: datetime | None = None,
    total_files: int = 0,
    root_missing: bool = False,
    allow_mass_delete: bool = False,
    case_sensitive: bool = True,
    existing: Iterable[str] = (),
) -> Plan:
    """Plan one batch. ``total_files`` is how many files the folder's base holds (for the
    mass-delete guard); ``existing`` names local paths outside the batch (so conflict
    copies and case checks do not collide with them)."""
    states = sorted(states, key=lambda s: s.path)
    result = Plan()
    if root_missing:
        result.mass_delete = Problem(
            "",
            "folder-missing",
            "The sync folder itself is gone (deleted, moved or unmounted).",
            "Nothing was deleted on the server. Put the folder back, or remove it from sync.",
        )
        return result

    by_path = {s.path: s for s in states}
    taken = {
        *existing,
        *(p for p, s in by_path.items() if s.local is not None or s.base is not None),
    }
    ctx = _Ctx(mode, local_edits, host, now or datetime.now(), taken, result)

    # Names the server cannot take, and names that normalise onto another one.
    skip: set[str] = set()
    for s in states:
        if any(_under(s.path, b) for b in skip):
            continue
        name = s.path.rpartition("/")[2]
        if s.local is None or s.base is not None:
            continue
        reason = invalid_name_reason(name)
        if reason is not None:
            skip.add(s.path)
            result.problems.append(
                Problem(
                    s.path,
                    "invalid-name",
                    f"The name {shown(name)} {reason}; the server cannot store it.",
                    "Rename the file; it is synced as soon as its name is valid.",
                )
            )
            continue
        nfc = unicodedata.normalize("NFC", s.path)
        if nfc != s.path:
            skip.add(s.path)
            result.problems.append(
                Problem(
                    s.path,
                    "name-clash",
                    "This name is written in a Unicode form the server stores differently"
                    + (", and another file already has that name." if nfc in taken else "."),
                    "Rename the file (retyping its name is enough).",
                    (nfc,),
                )
            )
    if not case_sensitive and mode is not FolderMode.UPLOAD_ONLY:
        folded: dict[str, str] = {}
        for p in sorted(taken):
            folded.setdefault(p.casefold(), p)
        for s in states:
            if s.local is None and s.base is None and s.remote is not None:
                other = folded.get(s.path.casefold())
                if other is not None and other != s.path:
                    skip.add(s.path)
                    result.problems.append(
                        Problem(
                            s.path,
                            "case-clash",
                            f"The server has both {shown(s.path)} and {shown(other)}; "
                            "this disk cannot hold names that differ only in case.",
                            "Rename one of them on the server.",
                            (other,),
                        )
                    )
                else:
                    folded[s.path.casefold()] = s.path

    live = [s for s in states if not any(_under(s.path, b) for b in skip)]
    moves, consumed = _detect_moves(live, mode)
    result.actions.extend(moves)
    for s in live:
        if s.path in consumed:
            continue
        if any(_under(s.path, c) for c in consumed):
            result.deferred.append(s.path)
            continue
        _plan_one(ctx, s)

    deletes = [
        a
        for a in result.actions
        if isinstance(a, DeleteRemote | DeleteLocal)
        and not (a.base.is_dir if isinstance(a, DeleteRemote) else a.expect.is_dir)
    ]
    if (
        not allow_mass_delete
        and len(deletes) >= MASS_DELETE_MIN
        and len(deletes) > MASS_DELETE_FRACTION * max(total_files, 1)
    ):
        where = "here" if isinstance(deletes[0], DeleteRemote) else "on the server"
        result.mass_delete = Problem(
            "",
            "mass-delete",
            f"{len(deletes)} of {total_files} files were deleted {where} at once; "
            "the folder is paused so nothing is deleted by mistake.",
            "Retry to delete them on the other side too, or dismiss to bring them back.",
        )
        result.actions = [
            a for a in result.actions if not isinstance(a, DeleteRemote | DeleteLocal)
        ]
        return result

    result.actions = _whole_folder_deletes(result.actions)
    result.actions.sort(key=lambda a: (_phase(a), _order_key(a)))
    return result


def _whole_folder_deletes(actions: list[Action]) -> list[Action]:
    """A folder deleted here goes to the server as one delete of the folder, not one per
    file in it, so the server's trash holds it as one item that comes back whole. Only
    when nothing but deletes is planned under it; the folder's delete first checks that
    the server holds nothing there this side has not seen."""
    dirs = [a.path for a in actions if isinstance(a, DeleteRemote) and a.base.is_dir]
    tops = [d for d in dirs if not any(o != d and _under(d, o) for o in dirs)]
    whole = [
        top
        for top in tops
        if all(
            isinstance(a, DeleteRemote) or (isinstance(a, RecordBase) and a.base is None)
            for a in actions
            if _path(a) != top and _under(_path(a), top)
        )
    ]
    return [a for a in actions if not any(_path(a) != t and _under(_path(a), t) for t in whole)]


def _path(a: Action) -> str:
    return a.src if isinstance(a, MoveRemote | MoveLocal | RecordMove) else a.path


def _order_key(a: Action) -> tuple[int, str]:
    path = _path(a)
    if _phase(a) == 4:
        return (-_depth(path), path)  # folders: deepest first
    return (_depth(path), path)
