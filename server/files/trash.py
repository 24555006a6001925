"""The trash: what a person deleted, brought back or purged for good.

A delete sets ``trashed_at`` on the entry and on every live entry of a folder's subtree
(the same moment). A trash item is a trashed entry whose parent was not trashed at that
same moment: a deleted folder is one item, its children come back with it. Restoring
re-creates missing parent folders and writes a ``created`` change for every entry that
comes back, so syncing clients download them; purging deletes the rows and then the
blobs nothing refers to any more (``files.blob_refs``).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import time
import uuid
from typing import Any

from sqlalchemy import Connection, Row, and_, func, literal, or_, select, update

from dropline.server.files.blob_refs import delete_blobs, share_pinned, unreferenced
from dropline.server.files.entries import FileService
from dropline.server.files.names import normalize_path, split_path
from dropline.server.files.purge import drop_entries
from dropline.server.files.records import (
    CREATED,
    FILE,
    FOLDER,
    TRASH_PURGE,
    TRASH_RESTORE,
    Entry,
    TrashItem,
    entry_from_row,
    new_rev,
)
from dropline.server.files.rows import subtree
from dropline.server.identity.accounts import Principal
from dropline.server.problems import Problem
from dropline.server.storage import schema

E = schema.entries
P = schema.entries.alias("parent")


def encode_trash_cursor(trashed_at: float, entry_id: str) -> str:
    raw = f"t1|{trashed_at!r}|{entry_id}".encode()
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def decode_trash_cursor(cursor: str) -> tuple[float, str]:
    try:
        raw = base64.b64decode(cursor + "=" * (-len(cursor) % 4), altchars=b"-_", validate=True)
        version, trashed_at, entry_id = raw.decode("ascii").split("|")
        if version != "t1":
            raise ValueError(version)
        return float(trashed_at), str(uuid.UUID(entry_id))
    except (binascii.Error, UnicodeError, ValueError):
        raise Problem("bad-request", "the listing cursor is malformed") from None


def _is_item() -> Any:
    """A trashed entry whose parent is gone, live, or trashed at another moment."""
    return and_(
        E.c.trashed_at.is_not(None),
        or_(P.c.id.is_(None), P.c.trashed_at.is_(None), P.c.trashed_at != E.c.trashed_at),
    )


def _items() -> Any:
    return select(E).outerjoin(P, P.c.id == E.c.parent_id).where(_is_item())


def _with_it(row: Row[Any]) -> Any:
    """The entries below trash item ``row`` that were deleted with it."""
    return and_(
        E.c.tenant_id == row.tenant_id,
        E.c.space_id == row.space_id,
        E.c.trashed_at == row.trashed_at,
        subtree(row.path),
    )


class Trash:
    """Trash listing, restore and purge over the file service's database and hooks."""

    def __init__(self, files: FileService) -> None:
        self.files = files

    # -- reads -----------------------------------------------------------------

    def _item_row(
        self, conn: Connection, tenant_id: str, space_id: str | None, item_id: str
    ) -> Row[Any]:
        query = _items().where(E.c.tenant_id == tenant_id, E.c.id == item_id)
        if space_id is not None:
            query = query.where(E.c.space_id == space_id)
        row = conn.execute(query).first()
        if row is None:
            raise Problem("not-found", "no such item in the trash")
        return row

    def _item(self, conn: Connection, principal: Principal, row: Row[Any]) -> TrashItem:
        entry = entry_from_row(row)
        files, size = 1, entry.size
        if entry.type == FOLDER:
            counted = conn.execute(
                select(func.count(), func.coalesce(func.sum(E.c.size), 0)).where(
                    _with_it(row), E.c.type == FILE
                )
            ).one()
            files, size = int(counted[0]), int(counted[1])
        taken = self.files.rows.by_path(conn, principal, entry.path) is not None
        return TrashItem(entry, float(row.trashed_at), files, size, taken)

    def list(
        self,
        principal: Principal,
        *,
        path: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> tuple[list[TrashItem], str | None]:
        """One page of the trash, newest deletion first: items at or under ``path``,
        deleted at ``since`` or later and before ``until``."""
        query = _items().where(
            E.c.tenant_id == principal.tenant_id, E.c.space_id == principal.space_id
        )
        prefix = normalize_path(path, allow_root=True) if path is not None else "/"
        if prefix != "/":
            query = query.where(or_(E.c.path == prefix, subtree(prefix)))
        if since is not None:
            query = query.where(E.c.trashed_at >= since)
        if until is not None:
            query = query.where(E.c.trashed_at < until)
        if cursor:
            at, after_id = decode_trash_cursor(cursor)
            query = query.where(
                or_(E.c.trashed_at < at, and_(E.c.trashed_at == at, E.c.id < after_id))
            )
        query = query.order_by(E.c.trashed_at.desc(), E.c.id.desc()).limit(limit + 1)
        with self.files.db.read() as conn:
            rows = conn.execute(query).all()
            items = [self._item(conn, principal, row) for row in rows[:limit]]
        next_cursor = None
        if len(rows) > limit:
            last = items[-1]
            next_cursor = encode_trash_cursor(last.trashed_at, last.entry.id)
        return items, next_cursor

    # -- restore ---------------------------------------------------------------

    def restore(self, principal: Principal, item_id: str, path: str | None = None) -> Entry:
        """Bring an item back to its old path, or to ``path``; a folder with its subtree.

        The old path taken and no ``path`` given: 409 ``already-exists``. Missing parent
        folders are created again.
        """
        target = normalize_path(path) if path is not None else None
        with self.files.db.read() as conn:
            row = self._item_row(conn, principal.tenant_id, principal.space_id, item_id)
        self.files.check(principal, "undelete", target or row.path, None)
        now = time.time()
        with self.files.db.write() as conn:
            row = self._item_row(conn, principal.tenant_id, principal.space_id, item_id)
            entry = entry_from_row(row)
            dest = target or entry.path
            if self.files.rows.by_path(conn, principal, dest) is not None:
                hint = "" if target else "; give a new path"
                raise Problem("already-exists", f"something is already at {dest}{hint}")
            parent_id = self.files.rows.ensure_parents(conn, principal, dest, now)
            restored = Entry(
                id=entry.id,
                name=split_path(dest)[1],
                path=dest,
                type=entry.type,
                size=entry.size,
                sha256=entry.sha256,
                rev=new_rev(),
                mtime=entry.mtime,
                parent_id=parent_id,
                blob_id=entry.blob_id,
            )
            below: list[Entry] = []
            if entry.type == FOLDER:
                # Children keep their ids and revs; only the derived path may change.
                below = [
                    dataclasses.replace(
                        entry_from_row(r), path=dest + str(r.path)[len(entry.path) :]
                    )
                    for r in conn.execute(select(E).where(_with_it(row)).order_by(E.c.path))
                ]
                conn.execute(
                    update(E)
                    .where(_with_it(row))
                    .values(
                        trashed_at=None,
                        path=literal(dest) + func.substr(E.c.path, len(entry.path) + 1),
                        updated_at=now,
                    )
                )
            conn.execute(
                update(E)
                .where(E.c.id == entry.id, E.c.tenant_id == principal.tenant_id)
                .values(
                    trashed_at=None,
                    name=restored.name,
                    path=restored.path,
                    parent_id=restored.parent_id,
                    rev=restored.rev,
                    updated_at=now,
                )
            )
            # Parents before children, so a client creates each folder before its files.
            first = self.files.rows.record(
                conn, principal, CREATED, restored, now, cause=TRASH_RESTORE
            )
            for child in below:
                self.files.rows.record(conn, principal, CREATED, child, now, cause=TRASH_RESTORE)
            self.files.rows.undone(
                conn,
                principal,
                TRASH_RESTORE,
                restored.path,
                {
                    "entry": restored.to_json(),
                    "old_path": entry.path if dest != entry.path else None,
                    "trashed_at": row.trashed_at,
                    "files": sum(1 for e in [restored, *below] if e.type == FILE),
                    "seq": first.seq,
                },
            )
        self.files.notify(principal)
        return restored

    # -- purge -----------------------------------------------------------------

    def purge(self, principal: Principal, item_id: str, *, as_admin: bool = False) -> int:
        """Delete an item (and its subtree) for good, with its revisions, and the blobs
        nothing else refers to. ``as_admin``: the item may be any user's of the tenant.
        Returns how many blobs were deleted."""
        now = time.time()
        with self.files.db.write() as conn:
            space = None if as_admin else principal.space_id
            try:
                row = self._item_row(conn, principal.tenant_id, principal.space_id, item_id)
            except Problem:
                if space is not None:
                    raise
                row = self._item_row(conn, principal.tenant_id, None, item_id)
            ids = [row.id, *(r.id for r in conn.execute(select(E.c.id).where(_with_it(row))))]
            pinned = share_pinned(conn, principal.tenant_id, now)
            named = drop_entries(conn, principal.tenant_id, ids, pinned)
            unused = unreferenced(conn, named)
            self.files.rows.undone(
                conn,
                principal,
                TRASH_PURGE,
                row.path,
                {
                    "entry_id": row.id,
                    "type": row.type,
                    "owner": row.space_id,
                    "trashed_at": row.trashed_at,
                    "entries": len(ids),
                    "blobs_deleted": len(unused),
                },
            )
        # After the commit: a rollback above leaves every blob in place.
        return delete_blobs(self.files.blobs, sorted(unused))


__all__ = ["Trash", "decode_trash_cursor", "encode_trash_cursor"]
