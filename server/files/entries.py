"""The file service: entries (files and folders) in a user's space, and every change to them.

No web framework here. Every query is filtered by the caller's tenant and space, so
an id from someone else is "not found" exactly like a missing one. Every write
records its change-feed row in the same transaction and wakes long-polls after
commit. :class:`FileHook` is where audit rows and policy checks plug in.
"""

from __future__ import annotations

import base64
import binascii
import logging
import secrets
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Protocol

from sqlalchemy import Connection, Row, and_, bindparam, func, literal, select, update

from dropline.server.files.names import (
    ancestors,
    join_path,
    normalize_name,
    normalize_path,
    split_path,
)
from dropline.server.identity.accounts import Principal
from dropline.server.problems import Problem
from dropline.server.storage import schema
from dropline.server.storage.blobs import BlobStore
from dropline.server.storage.db import Database

log = logging.getLogger(__name__)

FILE = "file"
FOLDER = "folder"

CREATED = "created"
MODIFIED = "modified"
MOVED = "moved"
DELETED = "deleted"

E = schema.entries

# Hot statements are built once: SQLAlchemy then reuses their compiled form and cache
# key instead of rebuilding both on every call (a large share of a small upload's CPU).
_LIVE = and_(
    E.c.tenant_id == bindparam("k_tenant"),
    E.c.space_id == bindparam("k_space"),
    E.c.trashed_at.is_(None),
)
_BY_ID = select(E).where(_LIVE, E.c.id == bindparam("entry_id"))
_BY_PATHS = select(E).where(_LIVE, E.c.path.in_(bindparam("paths", expanding=True)))
_INSERT_ENTRY = E.insert()
_INSERT_CHANGE = schema.changes.insert()
_INSERT_REVISION = schema.revisions.insert()
_UPDATE_CONTENT = (
    update(E)
    .where(_LIVE, E.c.id == bindparam("entry_id"))
    .values(
        size=bindparam("new_size"),
        sha256=bindparam("new_sha256"),
        rev=bindparam("new_rev"),
        mtime=bindparam("new_mtime"),
        blob_id=bindparam("new_blob_id"),
        updated_at=bindparam("now"),
    )
)


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


def _subtree(path: str) -> Any:
    """Live entries strictly below ``path``. '0' follows '/' in code-point order, so the
    range covers exactly the paths that start with ``path + '/'`` and can use the index."""
    return and_(E.c.path > path + "/", E.c.path < path + "0")


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

    # -- helpers ---------------------------------------------------------------

    @staticmethod
    def _scope(principal: Principal) -> Any:
        return and_(
            E.c.tenant_id == principal.tenant_id,
            E.c.space_id == principal.space_id,
            E.c.trashed_at.is_(None),
        )

    @staticmethod
    def _keys(principal: Principal) -> dict[str, str]:
        return {"k_tenant": principal.tenant_id, "k_space": principal.space_id}

    def _by_id(self, conn: Connection, principal: Principal, entry_id: str) -> Entry:
        row = conn.execute(_BY_ID, {**self._keys(principal), "entry_id": entry_id}).first()
        if row is None:
            raise Problem("not-found", "no such file or folder")
        return entry_from_row(row)

    def _by_paths(
        self, conn: Connection, principal: Principal, paths: list[str]
    ) -> dict[str, Entry]:
        rows = conn.execute(_BY_PATHS, {**self._keys(principal), "paths": paths}).all()
        return {row.path: entry_from_row(row) for row in rows}

    def _by_path(self, conn: Connection, principal: Principal, path: str) -> Entry | None:
        return self._by_paths(conn, principal, [path]).get(path)

    def check(self, principal: Principal, action: str, path: str, size: int | None = None) -> None:
        for hook in self.hooks:
            hook.check(principal, action, path, size)

    def _record(
        self,
        conn: Connection,
        principal: Principal,
        action: str,
        entry: Entry,
        now: float,
        old_path: str | None = None,
    ) -> Change:
        result = conn.execute(
            _INSERT_CHANGE,
            {
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
            },
        )
        key = result.inserted_primary_key
        assert key is not None
        change = Change(seq=int(key[0]), action=action, old_path=old_path, entry=entry)
        for hook in self.hooks:
            hook.recorded(conn, principal, change)
        return change

    def _notify(self, principal: Principal) -> None:
        if self.on_change is not None:
            self.on_change(principal.space_id)

    def _insert(self, conn: Connection, principal: Principal, entry: Entry, now: float) -> None:
        conn.execute(
            _INSERT_ENTRY,
            {
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
            },
        )

    def _ensure_parents(
        self,
        conn: Connection,
        principal: Principal,
        path: str,
        now: float,
        found: dict[str, Entry] | None = None,
    ) -> str | None:
        """Create the folders above ``path`` that are missing; returns the parent's id.

        ``found``: the live entries on the way down, if the caller already read them.
        """
        chain = ancestors(path)
        if not chain:
            return None
        if found is None:
            found = self._by_paths(conn, principal, chain)
        parent_id: str | None = None
        for folder_path in chain:
            existing = found.get(folder_path)
            if existing is not None:
                if existing.type != FOLDER:
                    raise Problem("conflict", f"{folder_path} is a file, not a folder")
                parent_id = existing.id
                continue
            folder = Entry(
                id=str(uuid.uuid4()),
                name=split_path(folder_path)[1],
                path=folder_path,
                type=FOLDER,
                size=0,
                sha256=None,
                rev=new_rev(),
                mtime=now,
                parent_id=parent_id,
            )
            self._insert(conn, principal, folder, now)
            self._record(conn, principal, CREATED, folder, now)
            parent_id = folder.id
        return parent_id

    # -- reads -----------------------------------------------------------------

    def get(self, principal: Principal, entry_id: str) -> Entry:
        with self.db.read() as conn:
            return self._by_id(conn, principal, entry_id)

    def lookup(self, principal: Principal, path: str) -> Entry:
        path = normalize_path(path, allow_root=True)
        if path == "/":
            raise Problem("not-found", "the root folder '/' has no entry; list it instead")
        with self.db.read() as conn:
            entry = self._by_path(conn, principal, path)
        if entry is None:
            raise Problem("not-found", f"nothing at {path}")
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
                folder = self._by_id(conn, principal, parent_id)
            elif path is not None and normalize_path(path, allow_root=True) != "/":
                normalized = normalize_path(path)
                folder = self._by_path(conn, principal, normalized)
                if folder is None:
                    raise Problem("not-found", f"nothing at {normalized}")
            if folder is not None and folder.type != FOLDER:
                raise Problem("conflict", f"{folder.path} is a file, not a folder")
            query = select(E).where(
                self._scope(principal),
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
            existing = self._by_path(conn, principal, path)
            if existing is not None:
                if existing.type == FOLDER:
                    return existing, False
                raise Problem("already-exists", f"a file is already at {path}")
            parent_id = self._ensure_parents(conn, principal, path, now)
            folder = Entry(
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
            self._insert(conn, principal, folder, now)
            self._record(conn, principal, CREATED, folder, now)
        self._notify(principal)
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
            entry = self._by_id(conn, principal, entry_id)
            if if_match is not None and if_match != entry.rev:
                raise Problem("precondition-failed", "the entry changed since that rev")
            if path is not None:
                target = path
            elif name is not None:
                target = join_path(split_path(entry.path)[0], name)
            else:
                assert parent_id is not None
                parent = self._by_id(conn, principal, parent_id)
                if parent.type != FOLDER:
                    raise Problem("conflict", f"{parent.path} is a file, not a folder")
                target = join_path(parent.path, entry.name)
            if target == entry.path:
                return entry
            self.check(principal, "move", target, None)
            if entry.type == FOLDER and target.startswith(entry.path + "/"):
                raise Problem("conflict", "a folder cannot be moved into itself")
            if self._by_path(conn, principal, target) is not None:
                raise Problem("already-exists", f"something is already at {target}")
            new_parent = self._ensure_parents(conn, principal, target, now)
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
                    .where(self._scope(principal), _subtree(entry.path))
                    .values(path=literal(target) + func.substr(E.c.path, len(entry.path) + 1))
                )
            conn.execute(
                update(E)
                .where(self._scope(principal), E.c.id == entry.id)
                .values(
                    name=moved.name,
                    path=moved.path,
                    parent_id=moved.parent_id,
                    rev=moved.rev,
                    updated_at=now,
                )
            )
            self._record(conn, principal, MOVED, moved, now, old_path=entry.path)
        self._notify(principal)
        return moved

    def delete(self, principal: Principal, entry_id: str, if_match: str | None = None) -> Entry:
        """Move an entry (and a folder's subtree) to the trash; revisions are kept."""
        now = time.time()
        with self.db.write() as conn:
            entry = self._by_id(conn, principal, entry_id)
            if if_match is not None and if_match != entry.rev:
                raise Problem("precondition-failed", "the entry changed since that rev")
            self.check(principal, "delete", entry.path, None)
            if entry.type == FOLDER:
                conn.execute(
                    update(E)
                    .where(self._scope(principal), _subtree(entry.path))
                    .values(trashed_at=now)
                )
            conn.execute(
                update(E)
                .where(self._scope(principal), E.c.id == entry.id)
                .values(trashed_at=now, updated_at=now)
            )
            self._record(conn, principal, DELETED, entry, now)
        self._notify(principal)
        return entry

    def check_publish(self, principal: Principal, path: str, if_rev: str | None) -> None:
        """Fail early (before any byte is sent) when a publish to ``path`` cannot succeed."""
        with self.db.read() as conn:
            existing = self._by_path(conn, principal, path)
            self._check_target(existing, path, if_rev)
            for folder_path in ancestors(path):
                above = self._by_path(conn, principal, folder_path)
                if above is not None and above.type != FOLDER:
                    raise Problem("conflict", f"{folder_path} is a file, not a folder")

    @staticmethod
    def _check_target(existing: Entry | None, path: str, if_rev: str | None) -> None:
        if if_rev == "none" and existing is not None:
            raise Problem("precondition-failed", f"something is already at {path}")
        if if_rev not in (None, "none") and (existing is None or existing.rev != if_rev):
            raise Problem("precondition-failed", f"the entry at {path} is not at rev {if_rev}")
        if existing is not None and existing.type == FOLDER:
            raise Problem("already-exists", f"a folder is at {path}")

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
            entry = self._publish_in(conn, principal, item, now)
            if in_transaction is not None:
                in_transaction(conn, entry)
        self._notify(principal)
        return entry

    def publish_many(
        self, principal: Principal, items: Sequence[Publication]
    ) -> list[Entry | Problem]:
        """Publish several files in one transaction, each exactly as :meth:`publish` would.

        Each file runs in a savepoint of its own: one that fails (stale ``if_rev``, a
        name taken, a policy refusing it) is rolled back alone and reported in its
        place in the result, and the others still commit together.
        """
        now = time.time()
        results: list[Entry | Problem] = []
        with self.db.write(savepoints=True) as conn:
            for item in items:
                savepoint = conn.begin_nested()
                try:
                    entry = self._publish_in(conn, principal, item, now)
                except Problem as problem:
                    savepoint.rollback()
                    results.append(problem)
                else:
                    savepoint.commit()
                    results.append(entry)
        if any(isinstance(r, Entry) for r in results):
            self._notify(principal)
        return results

    def _publish_in(
        self, conn: Connection, principal: Principal, item: Publication, now: float
    ) -> Entry:
        """One file's publication inside ``conn``'s transaction (see :meth:`publish`)."""
        path, blob_id, size, sha256, mtime = (
            item.path,
            item.blob_id,
            item.size,
            item.sha256,
            item.mtime,
        )
        # The target and every folder above it in one query.
        around = self._by_paths(conn, principal, [path, *ancestors(path)])
        existing = around.get(path)
        self._check_target(existing, path, item.if_rev)
        rev = new_rev()
        if existing is not None:
            entry = Entry(
                id=existing.id,
                name=existing.name,
                path=path,
                type=FILE,
                size=size,
                sha256=sha256,
                rev=rev,
                mtime=mtime if mtime is not None else now,
                parent_id=existing.parent_id,
                blob_id=blob_id,
            )
            conn.execute(
                _UPDATE_CONTENT,
                {
                    **self._keys(principal),
                    "entry_id": existing.id,
                    "new_size": size,
                    "new_sha256": sha256,
                    "new_rev": rev,
                    "new_mtime": entry.mtime,
                    "new_blob_id": blob_id,
                    "now": now,
                },
            )
            action = MODIFIED
        else:
            entry = Entry(
                id=str(uuid.uuid4()),
                name=split_path(path)[1],
                path=path,
                type=FILE,
                size=size,
                sha256=sha256,
                rev=rev,
                mtime=mtime if mtime is not None else now,
                parent_id=self._ensure_parents(conn, principal, path, now, around),
                blob_id=blob_id,
            )
            self._insert(conn, principal, entry, now)
            action = CREATED
        conn.execute(
            _INSERT_REVISION,
            {
                "entry_id": entry.id,
                "tenant_id": principal.tenant_id,
                "rev": rev,
                "blob_id": blob_id,
                "size": size,
                "sha256": sha256,
                "mtime": entry.mtime,
                "created_at": now,
            },
        )
        self._record(conn, principal, action, entry, now)
        return entry
