"""A file's version history: its revisions newest first, one past revision's content to
download, and restoring a past revision as a new one (history is never rewritten).

Revisions of a file in the trash can be listed and downloaded by the file's id; a
restore needs the file back from the trash first.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from sqlalchemy import Connection, Row, and_, func, select

from dropline.server.files.entries import FileService, decode_list_cursor, encode_list_cursor
from dropline.server.files.publishing import insert_revision, update_content
from dropline.server.files.records import (
    FILE,
    FILE_RESTORE,
    MODIFIED,
    Entry,
    Revision,
    entry_from_row,
    new_rev,
)
from dropline.server.identity.accounts import Principal
from dropline.server.problems import Problem
from dropline.server.storage import schema

E = schema.entries
R = schema.revisions
U = schema.users


def _revision(row: Row[Any], newest_id: int | None) -> Revision:
    m = row._mapping
    return Revision(
        entry_id=m["entry_id"],
        rev=m["rev"],
        size=int(m["size"]),
        sha256=m["sha256"],
        mtime=m["mtime"],
        created_at=m["created_at"],
        user_id=m["user_id"],
        email=m["email"],
        client=m["client"],
        current=m["id"] == newest_id,
        blob_id=m["blob_id"],
    )


def _revision_cursor(cursor: str) -> int:
    text = decode_list_cursor(cursor)
    if not text.isascii() or not text.isdigit() or len(text) > 19:
        raise Problem("bad-request", "the listing cursor is malformed")
    return int(text)


class Revisions:
    """Version history over the file service's database, rows and hooks."""

    def __init__(self, files: FileService) -> None:
        self.files = files

    # -- reads -----------------------------------------------------------------

    def _file(self, conn: Connection, principal: Principal, entry_id: str) -> tuple[Entry, bool]:
        """The file ``entry_id`` of the caller's space, live or in the trash: (file, trashed)."""
        row = conn.execute(
            select(E).where(
                E.c.tenant_id == principal.tenant_id,
                E.c.space_id == principal.space_id,
                E.c.id == entry_id,
            )
        ).first()
        if row is None:
            raise Problem("not-found", "no such file or folder")
        entry = entry_from_row(row)
        if entry.type != FILE:
            raise Problem("conflict", f"{entry.path} is a folder; only files have revisions")
        return entry, row.trashed_at is not None

    def _history(self, entry: Entry, principal: Principal) -> Any:
        return (
            select(R, U.c.email)
            .outerjoin(U, and_(U.c.id == R.c.user_id, U.c.tenant_id == R.c.tenant_id))
            .where(R.c.entry_id == entry.id, R.c.tenant_id == principal.tenant_id)
        )

    def _newest_id(self, conn: Connection, principal: Principal, entry: Entry) -> int | None:
        newest = conn.execute(
            select(func.max(R.c.id)).where(
                R.c.entry_id == entry.id, R.c.tenant_id == principal.tenant_id
            )
        ).scalar()
        return int(newest) if newest is not None else None

    def _find(self, conn: Connection, principal: Principal, entry: Entry, rev: str) -> Revision:
        """Revision ``rev`` of ``entry``; the entry's own rev (which a rename changes) names
        its current content too."""
        newest_id = self._newest_id(conn, principal, entry)
        query = self._history(entry, principal)
        if rev == entry.rev:
            query = query.where(R.c.id == newest_id)
        else:
            query = query.where(R.c.rev == rev)
        row = conn.execute(query.order_by(R.c.id.desc()).limit(1)).first()
        if row is None:
            raise Problem("not-found", f"{entry.path} has no revision {rev}")
        return _revision(row, newest_id)

    def list(
        self, principal: Principal, entry_id: str, *, limit: int = 50, cursor: str | None = None
    ) -> tuple[list[Revision], str | None]:
        """One page of the file's revisions, newest first, and the next page's cursor."""
        before = _revision_cursor(cursor) if cursor else None
        with self.files.db.read() as conn:
            entry, _trashed = self._file(conn, principal, entry_id)
            newest_id = self._newest_id(conn, principal, entry)
            query = self._history(entry, principal)
            if before is not None:
                query = query.where(R.c.id < before)
            rows = conn.execute(query.order_by(R.c.id.desc()).limit(limit + 1)).all()
        page = rows[:limit]
        next_cursor = encode_list_cursor(str(page[-1].id)) if len(rows) > limit else None
        return [_revision(row, newest_id) for row in page], next_cursor

    def content(self, principal: Principal, entry_id: str, rev: str) -> Entry:
        """The file as it was at ``rev``: its name and path now, that revision's bytes."""
        with self.files.db.read() as conn:
            entry, _trashed = self._file(conn, principal, entry_id)
            revision = self._find(conn, principal, entry, rev)
        return dataclasses.replace(
            entry,
            rev=rev,
            size=revision.size,
            sha256=revision.sha256,
            mtime=revision.mtime,
            blob_id=revision.blob_id,
        )

    # -- restore ---------------------------------------------------------------

    def restore(
        self, principal: Principal, entry_id: str, rev: str, if_match: str | None = None
    ) -> Entry:
        """Make ``rev``'s content the file's current content as a new revision.

        A stale ``if_match`` is 412 and changes nothing; ``rev`` already current is the
        entry unchanged. The change-feed row is ``modified``, so every client pulls it.
        """
        with self.files.db.read() as conn:
            entry, trashed = self._file(conn, principal, entry_id)
            if trashed:
                raise Problem(
                    "conflict", f"{entry.path} is in the trash; restore it from the trash first"
                )
            revision = self._find(conn, principal, entry, rev)
        if if_match is not None and if_match != entry.rev:
            raise Problem("precondition-failed", "the entry changed since that rev")
        if revision.current:
            return entry
        self.files.check(principal, "restore", entry.path, revision.size)
        now = time.time()
        with self.files.db.write() as conn:
            # Read again under the write lock: a publish, a delete or housekeeping may
            # have come first.
            current = self.files.rows.by_id(conn, principal, entry_id)
            if if_match is not None and if_match != current.rev:
                raise Problem("precondition-failed", "the entry changed since that rev")
            revision = self._find(conn, principal, current, rev)
            if revision.current:
                return current
            restored = dataclasses.replace(
                current,
                size=revision.size,
                sha256=revision.sha256,
                mtime=revision.mtime,
                blob_id=revision.blob_id,
                rev=new_rev(),
            )
            update_content(conn, principal, restored, now)
            insert_revision(conn, principal, restored, now)
            change = self.files.rows.record(
                conn, principal, MODIFIED, restored, now, cause=FILE_RESTORE
            )
            self.files.rows.undone(
                conn,
                principal,
                FILE_RESTORE,
                restored.path,
                {
                    "entry": restored.to_json(),
                    "from_rev": revision.rev,
                    "previous_rev": current.rev,
                    "seq": change.seq,
                },
            )
        self.files.notify(principal)
        return restored


__all__ = ["Revisions"]
