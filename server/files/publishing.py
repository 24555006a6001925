"""Publishing new content at a path: the file's entry created or updated and a revision
row kept for it, inside the caller's write transaction, with its change-feed row."""

from __future__ import annotations

import uuid

from sqlalchemy import Connection, bindparam, update

from dropline.server.files.names import ancestors, split_path
from dropline.server.files.records import (
    CREATED,
    FILE,
    FOLDER,
    MODIFIED,
    Entry,
    Publication,
    new_rev,
)
from dropline.server.files.rows import LIVE, EntryRows, keys
from dropline.server.identity.accounts import Principal
from dropline.server.problems import Problem
from dropline.server.storage import schema

E = schema.entries

# Built once, like the statements in files.rows.
_INSERT_REVISION = schema.revisions.insert()
_UPDATE_CONTENT = (
    update(E)
    .where(LIVE, E.c.id == bindparam("entry_id"))
    .values(
        size=bindparam("new_size"),
        sha256=bindparam("new_sha256"),
        rev=bindparam("new_rev"),
        mtime=bindparam("new_mtime"),
        blob_id=bindparam("new_blob_id"),
        updated_at=bindparam("now"),
    )
)


def check_target(existing: Entry | None, path: str, if_rev: str | None) -> None:
    """Refuse a publish to ``path`` that ``if_rev`` forbids or a folder stands in the way of.

    ``if_rev``: None publishes unconditionally; ``"none"`` only if nothing is at
    ``path``; a rev only if the entry there still has it.
    """
    if if_rev == "none" and existing is not None:
        raise Problem("precondition-failed", f"something is already at {path}")
    if if_rev not in (None, "none") and (existing is None or existing.rev != if_rev):
        raise Problem("precondition-failed", f"the entry at {path} is not at rev {if_rev}")
    if existing is not None and existing.type == FOLDER:
        raise Problem("already-exists", f"a folder is at {path}")


def publish_in(
    rows: EntryRows, conn: Connection, principal: Principal, item: Publication, now: float
) -> Entry:
    """One file's publication inside ``conn``'s transaction (see ``FileService.publish``)."""
    path, blob_id, size, sha256, mtime = (
        item.path,
        item.blob_id,
        item.size,
        item.sha256,
        item.mtime,
    )
    # The target and every folder above it in one query.
    around = rows.by_paths(conn, principal, [path, *ancestors(path)])
    existing = around.get(path)
    check_target(existing, path, item.if_rev)
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
        update_content(conn, principal, entry, now)
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
            parent_id=rows.ensure_parents(conn, principal, path, now, around),
            blob_id=blob_id,
        )
        rows.insert(conn, principal, entry, now)
        action = CREATED
    insert_revision(conn, principal, entry, now)
    rows.record(conn, principal, action, entry, now)
    return entry


def update_content(conn: Connection, principal: Principal, entry: Entry, now: float) -> None:
    """Point the live entry ``entry.id`` at ``entry``'s content and rev."""
    conn.execute(
        _UPDATE_CONTENT,
        {
            **keys(principal),
            "entry_id": entry.id,
            "new_size": entry.size,
            "new_sha256": entry.sha256,
            "new_rev": entry.rev,
            "new_mtime": entry.mtime,
            "new_blob_id": entry.blob_id,
            "now": now,
        },
    )


def insert_revision(conn: Connection, principal: Principal, entry: Entry, now: float) -> None:
    """The revision row of ``entry``'s content as it is now, with who published it and
    through which client."""
    conn.execute(
        _INSERT_REVISION,
        {
            "entry_id": entry.id,
            "tenant_id": principal.tenant_id,
            "rev": entry.rev,
            "blob_id": entry.blob_id,
            "size": entry.size,
            "sha256": entry.sha256,
            "mtime": entry.mtime,
            "created_at": now,
            "user_id": principal.user_id,
            "client": principal.client or principal.kind,
        },
    )
