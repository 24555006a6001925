"""An upload's last step: its bytes checked against the declared SHA-256, stored as a
blob and published as the new revision; on any refusal nothing is left behind and an
``upload.failed`` event tells webhooks. Runs in a worker thread, never on the event loop."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path

from sqlalchemy import Connection

from dropline.server.files.entries import FileService
from dropline.server.files.events import record_upload_failed
from dropline.server.files.records import Entry
from dropline.server.identity.accounts import Principal
from dropline.server.problems import Problem
from dropline.server.storage.blobs import BlobStore, new_blob_id
from dropline.server.storage.db import Database
from dropline.server.storage.space import insufficient_storage, out_of_space
from dropline.server.uploads.staging import StagedFile, remove_quietly
from dropline.server.uploads.tus import UploadTarget

Record = Callable[[Connection, Entry], None]  # runs inside the publish transaction


class Publisher:
    def __init__(self, db: Database, blobs: BlobStore, files: FileService) -> None:
        self.db = db
        self.blobs = blobs
        self.files = files

    def complete(
        self,
        principal: Principal,
        upload_id: str,
        staged: Path,
        digest: str,
        sums: bytes | None,
        length: int,
        target: UploadTarget,
        record: Record,
        discard: Callable[[], None],
    ) -> Entry:
        """Publish the fsynced bytes at ``staged`` (SHA-256 ``digest``, chunk ``sums`` if
        known) to the target.

        A digest other than the declared one, a stale ``if_rev``, a name taken or a
        policy refusal: ``discard()`` drops the upload, ``upload.failed`` is recorded,
        and the problem is raised. ``record`` runs inside the publish transaction. A
        full disk (blob or database) is ``insufficient-storage`` and keeps the staged
        bytes: the upload can publish once space is freed.
        """
        if target.sha256 is not None and digest != target.sha256:
            discard()
            self._failed(
                principal,
                upload_id,
                target,
                "integrity",
                "the bytes do not match the declared SHA-256",
            )
            raise Problem(
                "integrity",
                f"the uploaded bytes have SHA-256 {digest}, not the declared {target.sha256}; "
                "nothing was published and the upload was discarded",
            )
        blob_id = new_blob_id()
        try:
            self.blobs.put(blob_id, staged, sums)
        except OSError as exc:
            if out_of_space(exc):
                raise insufficient_storage("the file") from exc
            raise
        try:
            return self.files.publish(
                principal,
                target.path,
                blob_id=blob_id,
                size=length,
                sha256=digest,
                mtime=target.mtime,
                if_rev=target.if_rev,
                in_transaction=record,
            )
        except Problem as problem:
            self.blobs.delete(blob_id)
            discard()
            self._failed(
                principal, upload_id, target, problem.slug, problem.detail or problem.title
            )
            raise
        except BaseException as exc:
            self.blobs.delete(blob_id)
            if out_of_space(exc):
                raise insufficient_storage("the file") from exc
            raise

    def publish_whole(
        self,
        principal: Principal,
        upload_id: str,
        staged: Path,
        chunks: Sequence[bytes],
        target: UploadTarget,
        record: Record,
    ) -> Entry:
        """A whole small file received with its creating POST: the policy check, then
        staged, fsynced and hashed, then :meth:`complete`, all in this one thread trip
        (the same checks, in the same order, as for an upload finished by PATCH)."""
        length = sum(len(c) for c in chunks)
        self.files.check(principal, "upload", target.path, length)
        file = StagedFile(staged)
        hasher = hashlib.sha256()
        try:
            try:
                file.write(chunks, 0, (hasher,), True)
            except OSError as exc:
                if out_of_space(exc):
                    raise insufficient_storage("the file") from exc
                raise
            file.close()
            return self.complete(
                principal,
                upload_id,
                staged,
                hasher.hexdigest(),
                None,
                length,
                target,
                record,
                lambda: remove_quietly(staged),
            )
        finally:
            file.close()
            remove_quietly(staged)  # unless the blob store took it

    def _failed(
        self, principal: Principal, upload_id: str, target: UploadTarget, code: str, reason: str
    ) -> None:
        # upload.failed for webhooks (dropline.server.files.events).
        record_upload_failed(self.db, principal, upload_id, target.path, code, reason)


__all__ = ["Publisher"]
