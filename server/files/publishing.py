"""Publishing new content at a path: the file's entry created or updated and a revision
row kept for it, inside the caller's write transaction, with its change-feed row."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

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
from dropline.server.files.rows import LIVE, EntryRows, keys, new_folder_entry
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
    """One file's publication inside ``conn``'s transaction (see ``FileService.publish``):
    planned as a batch of one, its change rows recorded one by one with their hooks'
    ``recorded``, which may refuse it (the caller's transaction then rolls back)."""
    plan = _planned(rows, conn, principal, [item], now)
    [result] = plan.results
    if isinstance(result, Problem):
        raise result
    _write(rows, conn, principal, plan, now)
    for action, entry in plan.actions:
        rows.record(conn, principal, action, entry, now)
    return result


def update_content(conn: Connection, principal: Principal, entry: Entry, now: float) -> None:
    """Point the live entry ``entry.id`` at ``entry``'s content and rev."""
    conn.execute(_UPDATE_CONTENT, content_params(principal, entry, now))


def insert_revision(conn: Connection, principal: Principal, entry: Entry, now: float) -> None:
    """The revision row of ``entry``'s content as it is now, with who published it and
    through which client."""
    conn.execute(_INSERT_REVISION, revision_params(principal, entry, now))


def content_params(principal: Principal, entry: Entry, now: float) -> dict[str, Any]:
    return {
        **keys(principal),
        "entry_id": entry.id,
        "new_size": entry.size,
        "new_sha256": entry.sha256,
        "new_rev": entry.rev,
        "new_mtime": entry.mtime,
        "new_blob_id": entry.blob_id,
        "now": now,
    }


def revision_params(principal: Principal, entry: Entry, now: float) -> dict[str, Any]:
    return {
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
    }


class BatchPlan:
    """A batch publish worked out in Python before anything is written: the rows to
    insert and update, and each file's entry or problem in the order given.

    ``known`` starts as the live entries at every path and folder the batch names, and
    takes in each planned entry, so a later file sees the folders and files an earlier
    one made, exactly as it would if they were published one after another.
    """

    def __init__(self, known: dict[str, Entry], now: float) -> None:
        self.known = known
        self.now = now
        self.results: list[Entry | Problem] = []
        self.inserts: list[Entry] = []  # new folders and files, parents first
        self.updates: list[Entry] = []  # new content of existing files
        self.published: list[Entry] = []  # every file that gets a revision
        self.actions: list[tuple[str, Entry]] = []  # the change rows, in order

    def add(self, item: Publication) -> None:
        try:
            entry, folders = self._plan(item)
        except Problem as problem:
            self.results.append(problem)
            return
        for folder in folders:
            self.known[folder.path] = folder
            self.inserts.append(folder)
            self.actions.append((CREATED, folder))
        existing = self.known.get(item.path)
        if existing is None:
            self.inserts.append(entry)
            self.actions.append((CREATED, entry))
        else:
            self.updates.append(entry)
            self.actions.append((MODIFIED, entry))
        self.known[item.path] = entry
        self.published.append(entry)
        self.results.append(entry)

    def _plan(self, item: Publication) -> tuple[Entry, list[Entry]]:
        """``item``'s entry and the folders it needs made; raises what ``publish_in`` would."""
        path, now = item.path, self.now
        existing = self.known.get(path)
        check_target(existing, path, item.if_rev)
        folders: list[Entry] = []
        if existing is not None:
            entry_id, name, parent_id = existing.id, existing.name, existing.parent_id
        else:
            parent_id = None
            for folder_path in ancestors(path):
                above = self.known.get(folder_path)
                if above is not None:
                    if above.type != FOLDER:
                        raise Problem("conflict", f"{folder_path} is a file, not a folder")
                    parent_id = above.id
                    continue
                folder = new_folder_entry(folder_path, parent_id, now)
                folders.append(folder)
                parent_id = folder.id
            entry_id, name = str(uuid.uuid4()), split_path(path)[1]
        entry = Entry(
            id=entry_id,
            name=name,
            path=path,
            type=FILE,
            size=item.size,
            sha256=item.sha256,
            rev=new_rev(),
            mtime=item.mtime if item.mtime is not None else now,
            parent_id=parent_id,
            blob_id=item.blob_id,
        )
        return entry, folders


def publish_set(
    rows: EntryRows,
    conn: Connection,
    principal: Principal,
    items: Sequence[Publication],
    now: float,
) -> list[Entry | Problem]:
    """Publish ``items`` inside ``conn``'s transaction with a few statements for all of
    them: one read of every path involved, then one statement each for new entries,
    content updates, revisions and change rows, and each hook's rows in one go.

    A file that cannot be published (a stale ``if_rev``, a folder in the way) is its own
    problem in the result, as with ``publish_in`` one file at a time. Raises
    ``OneByOne`` when a hook says some file must be taken alone; the caller then rolls
    the batch back.
    """
    plan = _planned(rows, conn, principal, items, now)
    _write(rows, conn, principal, plan, now)
    if plan.actions:
        rows.record_many(conn, principal, plan.actions, now)
    return plan.results


def _planned(
    rows: EntryRows,
    conn: Connection,
    principal: Principal,
    items: Sequence[Publication],
    now: float,
) -> BatchPlan:
    # Every target and every folder above one, in one query.
    wanted = {path for item in items for path in (item.path, *ancestors(item.path))}
    plan = BatchPlan(rows.by_paths(conn, principal, sorted(wanted)), now)
    for item in items:
        plan.add(item)
    return plan


def _write(
    rows: EntryRows, conn: Connection, principal: Principal, plan: BatchPlan, now: float
) -> None:
    """The entry and revision rows of ``plan``, one statement each."""
    if plan.inserts:
        rows.insert_many(conn, principal, plan.inserts, now)
    if plan.updates:
        conn.execute(_UPDATE_CONTENT, [content_params(principal, e, now) for e in plan.updates])
    if plan.published:
        conn.execute(_INSERT_REVISION, [revision_params(principal, e, now) for e in plan.published])
