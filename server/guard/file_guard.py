"""The security hook of the file service: policy before and after, an audit row for each
file operation.

Plugged into :class:`dropline.server.files.entries.FileService` as a ``FileHook``. ``check`` runs
before an operation (classified folders; size, extension and quota for uploads)
and writes a ``file.download`` row for a download. ``recorded`` runs inside the
write transaction of every change: it checks a finished upload again (size,
quota and the content's first bytes against its extension) and writes the
``file.<action>`` audit row that commits with the change. A restore or purge is
audited once, by ``undone`` (``file.restore``, ``trash.restore``, ``trash.purge``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, select

from dropline.server.audit import trail
from dropline.server.guard import policy
from dropline.server.guard.security import Security, request_facts
from dropline.server.guard.usage import Retention
from dropline.server.identity.accounts import Principal
from dropline.server.storage import schema
from dropline.server.storage.blobs import BlobStore

log = logging.getLogger(__name__)


class SecurityFileHook:
    def __init__(self, security: Security, blobs: BlobStore) -> None:
        self.security = security
        self.blobs = blobs

    def _subject(self, principal: Principal) -> policy.Subject:
        facts = request_facts.get()
        via_mtls = principal.kind == "mtls" or bool(facts and facts.via_mtls)
        return policy.Subject(principal.tenant_id, principal.user_id, principal.scopes, via_mtls)

    def _rules(self, principal: Principal) -> policy.Rules:
        facts = request_facts.get()
        if facts is not None and facts.rules is not None and facts.tenant_id == principal.tenant_id:
            return facts.rules
        return policy.effective_cached(self.security.db, principal.tenant_id, principal.user_id)

    def check(self, principal: Principal, action: str, path: str, size: int | None) -> None:
        rules = self._rules(principal)
        subject = self._subject(principal)
        try:
            if action == "upload" and rules.storage_quota is not None and size is not None:
                # Only the quota needs the database: what is used, and what this replaces.
                with self.security.db.read() as conn:
                    # The replaced content stops counting only if no version of it is kept.
                    kept = Retention.of(rules).keeps_replaced
                    replaces = 0 if kept else _existing_size(conn, principal, path)
                    policy.check_upload(conn, rules, subject, path, size, replaces)
            elif action == "upload":
                policy.check_upload(None, rules, subject, path, size)
            elif action == "restore":
                # An old revision's bytes as new content: size and extension now; the
                # quota after the change (``recorded``), when what it keeps is known.
                unlimited = rules.model_copy(update={"storage_quota": None})
                policy.check_upload(None, unlimited, subject, path, size)
            elif action in ("move", "undelete"):
                # A rename into a blocked extension is refused like an upload of it.
                policy.check_upload(None, rules, subject, path, None)
            else:
                policy.check_path(rules, subject, path)
        except policy.PolicyDenied as denied:
            raise self.security.deny(None, principal, denied, resource=path) from None
        if action == "download":
            self._audit_download(principal, path, size)

    def hides(self, principal: Principal, path: str) -> bool:
        # An entry is in sight where its folder's listing shows it: a restricted folder
        # itself shows in its parent, what is under it does not.
        folder = path.rpartition("/")[0] or "/"
        try:
            policy.check_path(self._rules(principal), self._subject(principal), folder)
        except policy.PolicyDenied:
            return True
        return False

    def _audit_download(self, principal: Principal, path: str, size: int | None) -> None:
        facts = request_facts.get()
        if facts is not None:
            if facts.method == "HEAD" or ("download", path) in facts.audited:
                return
            facts.audited.add(("download", path))
        with self.security.db.write() as conn:
            trail.record(
                conn,
                self.security.context_for(principal),
                "file.download",
                "success",
                path,
                {"size": size},
            )

    def recorded(self, conn: Connection, principal: Principal, change: Any) -> None:
        entry = change.entry
        if _is_new_content(change):
            denied = self._finished_upload_denial(conn, principal, entry)
            if denied is not None:
                # Raising rolls the publish back; the denial's audit row is written after.
                raise self.security.deny(None, principal, denied, resource=entry.path)
        row = _audit_row(change)
        if row is not None:
            trail.record(conn, self.security.context_for(principal), *row)

    def recorded_many(self, conn: Connection, principal: Principal, changes: Sequence[Any]) -> bool:
        for change in changes:
            if _is_new_content(change) and self._finished_upload_denial(
                conn, principal, change.entry
            ):
                return False  # taken alone, where its denial is recorded once
        rows = [row for change in changes if (row := _audit_row(change)) is not None]
        trail.record_many(conn, self.security.context_for(principal), rows)
        return True

    def undone(
        self, conn: Connection, principal: Principal, action: str, path: str, detail: dict[str, Any]
    ) -> None:
        trail.record(conn, self.security.context_for(principal), action, "success", path, detail)

    def _finished_upload_denial(
        self, conn: Connection, principal: Principal, entry: Any
    ) -> policy.PolicyDenied | None:
        """What a policy says against a file just published in ``conn``'s transaction
        (size, quota, extension, content), or None."""
        rules = self._rules(principal)
        if not (rules.max_file_size or rules.storage_quota or rules.blocked_extensions) and not (
            rules.content_must_match_extension or rules.folders
        ):
            return None
        try:
            # The new size is already counted in this transaction: ``replaces`` takes it out
            # of the usage so the quota sees it exactly once.
            policy.check_upload(
                conn, rules, self._subject(principal), entry.path, entry.size, replaces=entry.size
            )
            if rules.content_must_match_extension and entry.blob_id:
                with self.blobs.open(entry.blob_id) as fh:
                    head = fh.read(policy.SNIFF_BYTES)
                policy.check_content(rules, entry.path, head)
        except policy.PolicyDenied as denied:
            return denied
        return None


def _is_new_content(change: Any) -> bool:
    """A file's new content, which the policy checks again once it is in place; not bytes
    back from the trash, which the quota counted all along."""
    return (
        change.cause != "trash.restore"
        and change.action in ("created", "modified")
        and change.entry.type == "file"
    )


def _audit_row(change: Any) -> tuple[str, str, str, dict[str, Any]] | None:
    """The ``file.<action>`` audit row of ``change`` (action, outcome, resource, detail);
    None for a change that is part of an undo, audited once by ``undone``."""
    if change.cause is not None:
        return None
    entry = change.entry
    detail: dict[str, Any] = {"entry_id": entry.id, "type": entry.type, "rev": entry.rev}
    if entry.type == "file":
        detail.update(size=entry.size, sha256=entry.sha256)
    if change.old_path:
        detail["old_path"] = change.old_path
    return f"file.{change.action}", "success", entry.path, detail


def _existing_size(conn: Connection, principal: Principal, path: str) -> int:
    """The size of the file an upload would replace (it stops counting against the quota)."""
    e = schema.entries
    row = conn.execute(
        select(e.c.size).where(
            e.c.tenant_id == principal.tenant_id,
            e.c.space_id == principal.space_id,
            e.c.path == path,
            e.c.trashed_at.is_(None),
            e.c.type == "file",
        )
    ).first()
    return int(row.size) if row is not None else 0


__all__ = ["SecurityFileHook"]
