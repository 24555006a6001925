"""The records of the file service: an :class:`Entry`, a change-feed :class:`Change`, a
:class:`Publication` of new content, the :class:`FileHook` plug-in point, and the entry
types and change actions they use."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy import Connection, Row

from dropline.server.identity.accounts import Principal

FILE = "file"
FOLDER = "folder"

CREATED = "created"
MODIFIED = "modified"
MOVED = "moved"
DELETED = "deleted"


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
    """One change-feed row: ``entry`` as it is after the change (as it was, for deletes)."""

    seq: int
    action: str
    old_path: str | None
    entry: Entry

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


class FileHook(Protocol):
    """Plug-in point for policy and audit.

    ``check`` runs before an operation touches anything and may raise a
    :class:`Problem` (for example ``policy-denied``). ``recorded`` runs inside the
    write transaction for every change row, so an audit row commits with its change.
    Actions passed to ``check``: ``create_folder``, ``upload``, ``move``, ``delete``,
    ``download``.
    """

    def check(self, principal: Principal, action: str, path: str, size: int | None) -> None: ...

    def recorded(self, conn: Connection, principal: Principal, change: Change) -> None: ...


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
