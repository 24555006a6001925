"""The file service: entries (files and folders) in a user's space, and every change to them.

No web framework here. Every query is filtered by the caller's tenant and space, so
an id from someone else is "not found" exactly like a missing one. Every write
records its change-feed row in the same transaction and wakes long-polls after
commit. :class:`FileHook` is where audit rows and policy checks plug in. The records
live in ``files.records``, the row statements in ``files.rows``, and the publishing of
new content in ``files.publishing``.
"""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import Callable, Sequence
from typing import BinaryIO

from sqlalchemy import Connection, func, literal, select, update

from dropline.server.files.names import (
    ancestors,
    join_path,
    normalize_name,
    normalize_path,
    split_path,
)
from dropline.server.files.publishing import check_target, publish_in, publish_set
from dropline.server.files.records import (
    DELETED,
    FILE,
    FOLDER,
    MOVED,
    Change,
    Entry,
    FileHook,
    OneByOne,
    Publication,
    as_seen,
    entry_from_row,
    new_rev,
)
from dropline.server.files.rows import EntryRows, scope, subtree
from dropline.server.identity.accounts import Principal
from dropline.server.problems import Problem
from dropline.server.storage import schema
from dropline.server.storage.blobs import BlobStore
from dropline.server.storage.db import Database

E = schema.entries


def encode_list_cursor(name: str) -> str:
    return base64.urlsafe_b64encode(name.encode("utf-8")).decode("ascii").rstrip("=")


def decode_list_cursor(cursor: str) -> str:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        raw = base64.b64decode(padded.encode("ascii"), altchars=b"-_", validate=True)
        return raw.decode("utf-8")
    except (binascii.Error, UnicodeError, ValueError):
        raise Problem("bad-request", "the listing cursor is malformed") from None


class FileService:
    """Metadata operations on one database; blobs live in ``blobs``."""

    def __init__(
        self,
        db: Database,
        blobs: BlobStore,
        on_change: Callable[[str], None] | None = None,
        hooks: Sequence[FileHook] = (),
    ) -> None:
        self.db = db
        self.blobs = blobs
        self.on_change = on_change
        self.hooks: list[FileHook] = list(hooks)
        self.rows = EntryRows(self.hooks)  # shares the list: hooks added later count too

    def check(self, principal: Principal, action: str, path: str, size: int | None = None) -> None:
        for hook in self.hooks:
            hook.check(principal, action, path, size)

    def notify(self, principal: Principal) -> None:
        """Wake the long-polls of ``principal``'s space (after a commit)."""
        if self.on_change is not None:
            self.on_change(principal.space_id)

    # -- reads -----------------------------------------------------------------

    def hides(self, principal: Principal, path: str) -> bool:
        return any(hook.hides(principal, path) for hook in self.hooks)

    def in_sight(self, principal: Principal, changes: Sequence[Change]) -> list[Change]:
        """The changes as ``principal`` may see them: none under a folder a policy keeps
        from them (a move across that boundary becomes a create or a delete)."""
        if not self.hooks:
            return list(changes)
        seen = (as_seen(c, lambda path: self.hides(principal, path)) for c in changes)
        return [c for c in seen if c is not None]

    def get(self, principal: Principal, entry_id: str) -> Entry:
        with self.db.read() as conn:
            entry = self.rows.by_id(conn, principal, entry_id)
        self._check_sight(principal, entry)
        return entry

    def _check_sight(self, principal: Principal, entry: Entry) -> None:
        """An entry's metadata needs what listing its folder needs."""
        self.check(principal, "list", entry.path.rpartition("/")[0] or "/")

    def lookup(self, principal: Principal, path: str) -> Entry:
        path = normalize_path(path, allow_root=True)
        if path == "/":
            raise Problem("not-found", "the root folder '/' has no entry; list it instead")
        with self.db.read() as conn:
            entry = self.rows.by_path(conn, principal, path)
        if entry is None:
            raise Problem("not-found", f"nothing at {path}")
        self._check_sight(principal, entry)
        return entry

    def list_folder(
        self,
        principal: Principal,
        *,
        path: str | None = None,
        parent_id: str | None = None,
        limit: int = 500,
        cursor: str | None = None,
    ) -> tuple[list[Entry], str | None]:
        """One page of a folder's children sorted by name, and the cursor of the next page."""
        after = decode_list_cursor(cursor) if cursor else None
        with self.db.read() as conn:
            folder: Entry | None = None
            if parent_id is not None:
                folder = self.rows.by_id(conn, principal, parent_id)
            elif path is not None and normalize_path(path, allow_root=True) != "/":
                normalized = normalize_path(path)
                folder = self.rows.by_path(conn, principal, normalized)
                if folder is None:
                    raise Problem("not-found", f"nothing at {normalized}")
            if folder is not None and folder.type != FOLDER:
                raise Problem("conflict", f"{folder.path} is a file, not a folder")
            # A folder a policy restricts is listed only by whoever may read a file in it.
            self.check(principal, "list", folder.path if folder is not None else "/")
            query = select(E).where(
                scope(principal),
                E.c.parent_id == folder.id if folder else E.c.parent_id.is_(None),
            )
            if after is not None:
                query = query.where(E.c.name > after)
            rows = conn.execute(query.order_by(E.c.name).limit(limit + 1)).all()
        entries = [entry_from_row(r) for r in rows[:limit]]
        next_cursor = encode_list_cursor(entries[-1].name) if len(rows) > limit else None
        return entries, next_cursor

    def open_content(self, principal: Principal, entry: Entry, offset: int = 0) -> BinaryIO:
        """A reader of ``entry``'s content at ``offset``. Blobs never change once
        published and earlier revisions are kept, so the reader stays consistent
        with ``entry`` even if a newer revision lands meanwhile."""
        if entry.type != FILE or entry.blob_id is None:
            raise Problem("conflict", f"{entry.path} is a folder; only files have content")
        self.check(principal, "download", entry.path, entry.size)
        return self.blobs.open(entry.blob_id, offset)

    # -- writes ----------------------------------------------------------------

    def create_folder(self, principal: Principal, path: str) -> tuple[Entry, bool]:
        """Create ``path`` and any missing parents; returns (folder, created)."""
        path = normalize_path(path)
        self.check(principal, "create_folder", path, None)
        now = time.time()
        with self.db.write() as conn:
            existing = self.rows.by_path(conn, principal, path)
            if existing is not None:
                if existing.type == FOLDER:
                    return existing, False
                raise Problem("already-exists", f"a file is already at {path}")
            parent_id = self.rows.ensure_parents(conn, principal, path, now)
            folder = self.rows.new_folder(conn, principal, path, parent_id, now)
        self.notify(principal)
        return folder, True

    def move(
        self,
        principal: Principal,
        entry_id: str,
        *,
        path: str | None = None,
        name: str | None = None,
        parent_id: str | None = None,
        if_match: str | None = None,
    ) -> Entry:
        """Move or rename one entry (a folder takes its subtree along)."""
        if sum(x is not None for x in (path, name, parent_id)) != 1:
            raise Problem("validation", "give exactly one of 'path', 'name' or 'parent_id'")
        if path is not None:
            path = normalize_path(path)
        if name is not None:
            name = normalize_name(name)
        now = time.time()
        with self.db.write() as conn:
            entry = self.rows.by_id(conn, principal, entry_id)
            if if_match is not None and if_match != entry.rev:
                raise Problem("precondition-failed", "the entry changed since that rev")
            if path is not None:
                target = path
            elif name is not None:
                target = join_path(split_path(entry.path)[0], name)
            else:
                assert parent_id is not None
                parent = self.rows.by_id(conn, principal, parent_id)
                if parent.type != FOLDER:
                    raise Problem("conflict", f"{parent.path} is a file, not a folder")
                target = join_path(parent.path, entry.name)
            if target == entry.path:
                return entry
            self.check(principal, "move", target, None)
            if entry.type == FOLDER and target.startswith(entry.path + "/"):
                raise Problem("conflict", "a folder cannot be moved into itself")
            if self.rows.by_path(conn, principal, target) is not None:
                raise Problem("already-exists", f"something is already at {target}")
            new_parent = self.rows.ensure_parents(conn, principal, target, now)
            moved = Entry(
                id=entry.id,
                name=split_path(target)[1],
                path=target,
                type=entry.type,
                size=entry.size,
                sha256=entry.sha256,
                rev=new_rev(),
                mtime=entry.mtime,
                parent_id=new_parent,
                blob_id=entry.blob_id,
            )
            if entry.type == FOLDER:
                # Children keep their ids and revs; only the derived path changes.
                conn.execute(
                    update(E)
                    .where(scope(principal), subtree(entry.path))
                    .values(path=literal(target) + func.substr(E.c.path, len(entry.path) + 1))
                )
            conn.execute(
                update(E)
                .where(scope(principal), E.c.id == entry.id)
                .values(
                    name=moved.name,
                    path=moved.path,
                    parent_id=moved.parent_id,
                    rev=moved.rev,
                    updated_at=now,
                )
            )
            self.rows.record(conn, principal, MOVED, moved, now, old_path=entry.path)
        self.notify(principal)
        return moved

    def delete(self, principal: Principal, entry_id: str, if_match: str | None = None) -> Entry:
        """Move an entry (and a folder's subtree) to the trash; revisions are kept."""
        now = time.time()
        with self.db.write() as conn:
            entry = self.rows.by_id(conn, principal, entry_id)
            if if_match is not None and if_match != entry.rev:
                raise Problem("precondition-failed", "the entry changed since that rev")
            self.check(principal, "delete", entry.path, None)
            if entry.type == FOLDER:
                conn.execute(
                    update(E).where(scope(principal), subtree(entry.path)).values(trashed_at=now)
                )
            conn.execute(
                update(E)
                .where(scope(principal), E.c.id == entry.id)
                .values(trashed_at=now, updated_at=now)
            )
            self.rows.record(conn, principal, DELETED, entry, now)
        self.notify(principal)
        return entry

    def check_publish(self, principal: Principal, path: str, if_rev: str | None) -> None:
        """Fail early (before any byte is sent) when a publish to ``path`` cannot succeed."""
        with self.db.read() as conn:
            existing = self.rows.by_path(conn, principal, path)
            check_target(existing, path, if_rev)
            for folder_path in ancestors(path):
                above = self.rows.by_path(conn, principal, folder_path)
                if above is not None and above.type != FOLDER:
                    raise Problem("conflict", f"{folder_path} is a file, not a folder")

    def publish(
        self,
        principal: Principal,
        path: str,
        *,
        blob_id: str,
        size: int,
        sha256: str,
        mtime: float | None,
        if_rev: str | None = None,
        in_transaction: Callable[[Connection, Entry], None] | None = None,
    ) -> Entry:
        """Make ``blob_id`` the new content at ``path`` in one transaction.

        ``if_rev``: None publishes unconditionally; ``"none"`` only if nothing is at
        ``path``; a rev only if the entry there still has it (else 412, nothing changes).
        ``in_transaction`` runs inside the same transaction (the upload marks itself done).
        """
        now = time.time()
        item = Publication(path, blob_id, size, sha256, mtime, if_rev)
        with self.db.write() as conn:
            entry = publish_in(self.rows, conn, principal, item, now)
            if in_transaction is not None:
                in_transaction(conn, entry)
        self.notify(principal)
        return entry

    def publish_many(
        self, principal: Principal, items: Sequence[Publication]
    ) -> list[Entry | Problem]:
        """Publish several files in one transaction, each exactly as :meth:`publish` would.

        A file that fails (stale ``if_rev``, a name taken, a policy refusing it) is
        reported in its place in the result, and the others still commit together. The
        batch is written set-based (``publish_set``: a few statements for all of it);
        when a hook says some file must be taken alone, that is rolled back and each
        file runs in a savepoint of its own instead, so one refusal undoes only its file.
        """
        now = time.time()
        with self.db.write(savepoints=True) as conn:
            try:
                with conn.begin_nested():
                    results = publish_set(self.rows, conn, principal, items, now)
            except OneByOne:
                results = [self._publish_alone(conn, principal, item, now) for item in items]
        if any(isinstance(r, Entry) for r in results):
            self.notify(principal)
        return results

    def _publish_alone(
        self, conn: Connection, principal: Principal, item: Publication, now: float
    ) -> Entry | Problem:
        savepoint = conn.begin_nested()
        try:
            entry = publish_in(self.rows, conn, principal, item, now)
        except Problem as problem:
            savepoint.rollback()
            return problem
        savepoint.commit()
        return entry
