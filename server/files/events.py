"""File events for webhooks: ``file.uploaded``, ``file.moved``, ``file.deleted``,
``file.restored`` and ``upload.failed`` written to the events outbox.

:class:`FileEvents` plugs into the file service as a
:class:`dropline.server.files.records.FileHook`, so
each event is written inside the transaction of the change it reports (a change
and its event commit together or not at all).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection

from dropline.server.audit.events import record_event, record_events
from dropline.server.files.records import (
    CREATED,
    DELETED,
    FILE,
    FILE_RESTORE,
    MODIFIED,
    MOVED,
    TRASH_RESTORE,
    Change,
)
from dropline.server.identity.accounts import Principal
from dropline.server.storage.db import Database


def _actor(principal: Principal) -> dict[str, Any]:
    return {
        "user_id": principal.user_id,
        "credential_id": principal.credential_id,
        "credential_kind": principal.kind,
    }


class FileEvents:
    """The change feed's rows, as outbox events."""

    def check(self, principal: Principal, action: str, path: str, size: int | None) -> None:
        return None  # events never refuse an operation

    def hides(self, principal: Principal, path: str) -> bool:
        return False

    def recorded(self, conn: Connection, principal: Principal, change: Change) -> None:
        self.recorded_many(conn, principal, [change])

    def recorded_many(
        self, conn: Connection, principal: Principal, changes: Sequence[Change]
    ) -> bool:
        events = [event for change in changes if (event := _event(principal, change))]
        if events:
            record_events(conn, principal.tenant_id, events)
        return True

    def undone(
        self, conn: Connection, principal: Principal, action: str, path: str, detail: dict[str, Any]
    ) -> None:
        """``file.restored``: a past revision made current again, or an item back from the
        trash (``action`` says which; ``entry`` is the restored file or folder)."""
        if action not in (FILE_RESTORE, TRASH_RESTORE):
            return
        payload: dict[str, Any] = {"action": action, **detail, **_actor(principal)}
        record_event(conn, principal.tenant_id, "file.restored", payload)


def _event(principal: Principal, change: Change) -> tuple[str, dict[str, Any]] | None:
    """The outbox event that announces ``change``, if any: its type and payload."""
    if change.cause is not None:
        return None  # a restore is announced once, as ``file.restored`` (see ``undone``)
    entry = change.entry
    if change.action in (CREATED, MODIFIED):
        if entry.type != FILE:
            return None  # a new folder is not an upload
        event = "file.uploaded"
    elif change.action == MOVED:
        event = "file.moved"
    elif change.action == DELETED:
        event = "file.deleted"
    else:
        return None
    payload: dict[str, Any] = {
        "entry": entry.to_json(),
        "action": change.action,
        "seq": change.seq,
        **_actor(principal),
    }
    if change.action == MOVED:
        payload["old_path"] = change.old_path
    return event, payload


def record_upload_failed(
    db: Database, principal: Principal, upload_id: str, path: str, code: str, reason: str
) -> None:
    """``upload.failed``: a finished upload that could not be published (checksum
    mismatch, stale ``if_rev``, a name taken, a policy) and was discarded."""
    with db.write() as conn:
        record_event(
            conn,
            principal.tenant_id,
            "upload.failed",
            {
                "upload_id": upload_id,
                "path": path,
                "code": code,
                "reason": reason,
                **_actor(principal),
            },
        )


__all__ = ["FileEvents", "record_upload_failed"]
