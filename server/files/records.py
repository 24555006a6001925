"""The records of the file service: an :class:`Entry`, a change-feed :class:`Change`, a
:class:`Publication` of new content, a past :class:`Revision`, a :class:`TrashItem`, the
:class:`FileHook` plug-in point, and the entry types and change actions they use."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from sqlalchemy import Connection, Row

from dropline.server.identity.accounts import Principal

FILE = "file"
FOLDER = "folder"

CREATED = "created"
MODIFIED = "modified"
MOVED = "moved"
DELETED = "deleted"

# Undo operations: what a change was part of (``Change.cause``), and the audit actions
# and hook calls that report them once each.
FILE_RESTORE = "file.restore"
TRASH_RESTORE = "trash.restore"
TRASH_PURGE = "trash.purge"


@dataclass(frozen=True, slots=True)
class Entry:
    id: str
    name: str
    path: str
    type: str
    size: int
    sha256: str | None
    rev: str
    mtime: float | None
    parent_id: str | None
    blob_id: str | None = field(default=None, repr=False)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "path": self.path,
            "type": self.type,
            "size": self.size,
            "sha256": self.sha256,
            "rev": self.rev,
            "mtime": self.mtime,
            "parent_id": self.parent_id,
        }


@dataclass(frozen=True, slots=True)
class Change:
    """One change-feed row: ``entry`` as it is after the change (as it was, for deletes).

    ``cause``: ``FILE_RESTORE`` or ``TRASH_RESTORE`` when the change is part of an undo,
    which its hooks report once through :meth:`FileHook.undone` instead of per row.
    """

    seq: int
    action: str
    old_path: str | None
    entry: Entry
    cause: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "action": self.action,
            "old_path": self.old_path,
            "entry": self.entry.to_json(),
        }


@dataclass(frozen=True, slots=True)
class Publication:
    """One file for :meth:`FileService.publish_many`: new content (a stored blob) for a path."""

    path: str
    blob_id: str
    size: int
    sha256: str
    mtime: float | None
    if_rev: str | None = None


@dataclass(frozen=True, slots=True)
class Revision:
    """One published content of a file, kept after overwrite and delete.

    ``user_id`` and ``email`` are the publisher's (None for revisions older than that
    record; the user is shown only while the account exists); ``current`` marks the
    file's newest revision.
    """

    entry_id: str
    rev: str
    size: int
    sha256: str
    mtime: float | None
    created_at: float
    user_id: str | None
    email: str | None
    client: str | None
    current: bool
    blob_id: str = field(repr=False)

    def to_json(self) -> dict[str, Any]:
        return {
            "rev": self.rev,
            "size": self.size,
            "sha256": self.sha256,
            "mtime": self.mtime,
            "created_at": self.created_at,
            "user": {"id": self.user_id, "email": self.email}
            if self.user_id and self.email
            else None,
            "client": self.client,
            "current": self.current,
        }


@dataclass(frozen=True, slots=True)
class TrashItem:
    """What a person deleted: a file, or a folder with the subtree deleted with it.

    ``size`` and ``files`` count what comes back with it; ``path_taken`` says that
    something live stands at ``entry.path`` now (a restore there needs a new path).
    """

    entry: Entry
    trashed_at: float
    files: int
    size: int
    path_taken: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.entry.id,
            "name": self.entry.name,
            "path": self.entry.path,
            "type": self.entry.type,
            "size": self.size,
            "sha256": self.entry.sha256,
            "rev": self.entry.rev,
            "trashed_at": self.trashed_at,
            "files": self.files,
            "path_taken": self.path_taken,
        }


class FileHook(Protocol):
    """Plug-in point for policy and audit.

    ``check`` runs before an operation touches anything and may raise a
    :class:`Problem` (for example ``policy-denied``). ``recorded`` runs inside the
    write transaction for every change row, so an audit row commits with its change.
    ``recorded_many`` does the same for the rows of a batch publish.
    ``undone`` runs once inside the transaction of a restore or purge (``FILE_RESTORE``,
    ``TRASH_RESTORE``, ``TRASH_PURGE``) with what it did.
    Actions passed to ``check``: ``create_folder``, ``upload``, ``move``, ``delete``,
    ``download``, ``list`` (a folder's children, and the metadata of each), ``restore``
    (a past revision's bytes become the file's again, ``size`` given) and ``undelete``
    (a trash item lands at ``path``). ``hides`` says, without refusing or auditing
    anything, whether ``path`` is out of ``principal``'s sight (the change feed leaves
    such changes out).
    """

    def check(self, principal: Principal, action: str, path: str, size: int | None) -> None: ...

    def hides(self, principal: Principal, path: str) -> bool: ...

    def recorded(self, conn: Connection, principal: Principal, change: Change) -> None: ...

    def recorded_many(
        self, conn: Connection, principal: Principal, changes: Sequence[Change]
    ) -> bool:
        """``recorded`` for the rows of a set-based batch publish, in one go.

        Returns False, having written nothing and raised nothing, when some file must be
        taken alone (a policy would refuse it): the batch is then rolled back and
        published a file at a time, each file's refusal its own.
        """
        ...

    def undone(
        self, conn: Connection, principal: Principal, action: str, path: str, detail: dict[str, Any]
    ) -> None: ...


class OneByOne(Exception):
    """Some file of a batch must be taken alone (a hook's ``recorded_many`` said so): the
    batch is rolled back and published one file at a time instead."""


def as_seen(change: Change, hidden: Callable[[str], bool]) -> Change | None:
    """``change`` as someone who cannot see the paths ``hidden`` names sees it: not at
    all, or a move across the boundary as a plain create or delete on the visible side."""
    after = hidden(change.entry.path)
    before = change.old_path is not None and hidden(change.old_path)
    if change.action != MOVED or change.old_path is None:
        return None if after else change
    if after and before:
        return None
    if after:  # moved out of sight: gone from where it was seen
        name = change.old_path.rpartition("/")[2]
        entry = replace(change.entry, path=change.old_path, name=name)
        return replace(change, action=DELETED, old_path=None, entry=entry)
    if before:  # moved into sight: new where it is seen now
        return replace(change, action=CREATED, old_path=None)
    return change


def new_rev() -> str:
    return secrets.token_hex(8)


def entry_from_row(row: Row[Any]) -> Entry:
    m = row._mapping
    return Entry(
        id=m["id"],
        name=m["name"],
        path=m["path"],
        type=m["type"],
        size=int(m["size"] or 0),
        sha256=m["sha256"],
        rev=m["rev"],
        mtime=m["mtime"],
        parent_id=m["parent_id"],
        blob_id=m["blob_id"],
    )
