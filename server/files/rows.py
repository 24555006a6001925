"""The ``entries`` and ``changes`` rows under the file service: lookups of live entries
in the caller's space, new entry rows, the missing folders above a path, and each
change-feed row (with its hooks, in the write's transaction)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, and_, bindparam, select

from dropline.server.files.names import ancestors, split_path
from dropline.server.files.records import (
    CREATED,
    FOLDER,
    Change,
    Entry,
    FileHook,
    OneByOne,
    entry_from_row,
    new_rev,
)
from dropline.server.identity.accounts import Principal
from dropline.server.problems import Problem
from dropline.server.storage import schema

E = schema.entries

# Hot statements are built once: SQLAlchemy then reuses their compiled form and cache
# key instead of rebuilding both on every call (a large share of a small upload's CPU).
LIVE = and_(
    E.c.tenant_id == bindparam("k_tenant"),
    E.c.space_id == bindparam("k_space"),
    E.c.trashed_at.is_(None),
)
_BY_ID = select(E).where(LIVE, E.c.id == bindparam("entry_id"))
_BY_PATHS = select(E).where(LIVE, E.c.path.in_(bindparam("paths", expanding=True)))
_INSERT_ENTRY = E.insert()
_INSERT_CHANGE = schema.changes.insert()
# Many rows in one statement, their numbers back in the order given.
_INSERT_CHANGES_RETURNING_SEQ = schema.changes.insert().returning(
    schema.changes.c.seq, sort_by_parameter_order=True
)


def scope(principal: Principal) -> Any:
    """Live entries in ``principal``'s space."""
    return and_(
        E.c.tenant_id == principal.tenant_id,
        E.c.space_id == principal.space_id,
        E.c.trashed_at.is_(None),
    )


def keys(principal: Principal) -> dict[str, str]:
    """The values of :data:`LIVE`'s parameters for ``principal``."""
    return {"k_tenant": principal.tenant_id, "k_space": principal.space_id}


def subtree(path: str) -> Any:
    """Live entries strictly below ``path``. '0' follows '/' in code-point order, so the
    range covers exactly the paths that start with ``path + '/'`` and can use the index."""
    return and_(E.c.path > path + "/", E.c.path < path + "0")


def entry_params(principal: Principal, entry: Entry, now: float) -> dict[str, Any]:
    """The values of a new ``entries`` row for ``entry`` in ``principal``'s space."""
    return {
        "id": entry.id,
        "tenant_id": principal.tenant_id,
        "space_id": principal.space_id,
        "parent_id": entry.parent_id,
        "name": entry.name,
        "path": entry.path,
        "type": entry.type,
        "size": entry.size,
        "sha256": entry.sha256,
        "rev": entry.rev,
        "mtime": entry.mtime,
        "blob_id": entry.blob_id,
        "trashed_at": None,
        "created_at": now,
        "updated_at": now,
    }


def change_params(
    principal: Principal, action: str, entry: Entry, now: float, old_path: str | None
) -> dict[str, Any]:
    """The values of a ``changes`` row: ``entry`` as it is after ``action``."""
    return {
        "tenant_id": principal.tenant_id,
        "space_id": principal.space_id,
        "entry_id": entry.id,
        "action": action,
        "path": entry.path,
        "old_path": old_path,
        "type": entry.type,
        "size": entry.size,
        "sha256": entry.sha256,
        "rev": entry.rev,
        "mtime": entry.mtime,
        "parent_id": entry.parent_id,
        "at": now,
    }


class EntryRows:
    """Reads and writes of entry and change rows inside a caller's connection.

    ``hooks`` is the file service's own list: hooks added to it later are called too.
    """

    def __init__(self, hooks: list[FileHook]) -> None:
        self.hooks = hooks

    def by_id(self, conn: Connection, principal: Principal, entry_id: str) -> Entry:
        row = conn.execute(_BY_ID, {**keys(principal), "entry_id": entry_id}).first()
        if row is None:
            raise Problem("not-found", "no such file or folder")
        return entry_from_row(row)

    def by_paths(
        self, conn: Connection, principal: Principal, paths: list[str]
    ) -> dict[str, Entry]:
        rows = conn.execute(_BY_PATHS, {**keys(principal), "paths": paths}).all()
        return {row.path: entry_from_row(row) for row in rows}

    def by_path(self, conn: Connection, principal: Principal, path: str) -> Entry | None:
        return self.by_paths(conn, principal, [path]).get(path)

    def record(
        self,
        conn: Connection,
        principal: Principal,
        action: str,
        entry: Entry,
        now: float,
        old_path: str | None = None,
        cause: str | None = None,
    ) -> Change:
        result = conn.execute(
            _INSERT_CHANGE, change_params(principal, action, entry, now, old_path)
        )
        key = result.inserted_primary_key
        assert key is not None
        change = Change(seq=int(key[0]), action=action, old_path=old_path, entry=entry, cause=cause)
        for hook in self.hooks:
            hook.recorded(conn, principal, change)
        return change

    def record_many(
        self,
        conn: Connection,
        principal: Principal,
        actions: Sequence[tuple[str, Entry]],
        now: float,
    ) -> list[Change]:
        """The change rows of ``actions`` (no moves), in order, with one statement; then
        each hook's ``recorded_many``. Raises ``OneByOne`` when a hook declines the set."""
        result = conn.execute(
            _INSERT_CHANGES_RETURNING_SEQ,
            [change_params(principal, action, entry, now, None) for action, entry in actions],
        )
        seqs = [int(row.seq) for row in result]
        changes = [
            Change(seq=seq, action=action, old_path=None, entry=entry)
            for seq, (action, entry) in zip(seqs, actions, strict=True)
        ]
        for hook in self.hooks:
            if not hook.recorded_many(conn, principal, changes):
                raise OneByOne
        return changes

    def undone(
        self, conn: Connection, principal: Principal, action: str, path: str, detail: dict[str, Any]
    ) -> None:
        """Tell the hooks, inside ``conn``'s transaction, about one restore or purge."""
        for hook in self.hooks:
            hook.undone(conn, principal, action, path, detail)

    def insert(self, conn: Connection, principal: Principal, entry: Entry, now: float) -> None:
        self.insert_many(conn, principal, [entry], now)

    def insert_many(
        self, conn: Connection, principal: Principal, entries: Sequence[Entry], now: float
    ) -> None:
        """New entry rows, in the order given (a folder before what is in it)."""
        conn.execute(_INSERT_ENTRY, [entry_params(principal, entry, now) for entry in entries])

    def ensure_parents(
        self, conn: Connection, principal: Principal, path: str, now: float
    ) -> str | None:
        """Create the folders above ``path`` that are missing; returns the parent's id."""
        chain = ancestors(path)
        if not chain:
            return None
        found = self.by_paths(conn, principal, chain)
        parent_id: str | None = None
        for folder_path in chain:
            existing = found.get(folder_path)
            if existing is not None:
                if existing.type != FOLDER:
                    raise Problem("conflict", f"{folder_path} is a file, not a folder")
                parent_id = existing.id
                continue
            parent_id = self.new_folder(conn, principal, folder_path, parent_id, now).id
        return parent_id

    def new_folder(
        self, conn: Connection, principal: Principal, path: str, parent_id: str | None, now: float
    ) -> Entry:
        """Insert the folder row at ``path`` (its parent exists) and its ``created`` change."""
        folder = new_folder_entry(path, parent_id, now)
        self.insert(conn, principal, folder, now)
        self.record(conn, principal, CREATED, folder, now)
        return folder


def new_folder_entry(path: str, parent_id: str | None, now: float) -> Entry:
    """A new folder's entry at ``path``, below ``parent_id``."""
    return Entry(
        id=str(uuid.uuid4()),
        name=split_path(path)[1],
        path=path,
        type=FOLDER,
        size=0,
        sha256=None,
        rev=new_rev(),
        mtime=now,
        parent_id=parent_id,
    )
