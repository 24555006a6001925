"""Blob storage: file contents stored by opaque id, never under a user-supplied path.

:class:`BlobStore` is the seam (an encrypting store can wrap another one);
:class:`LocalBlobStore` keeps blobs on local disk and publishes them atomically.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import shutil
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO, Protocol

log = logging.getLogger(__name__)

_BLOB_ID = re.compile(r"^[0-9a-f]{32}$")


def new_blob_id() -> str:
    return uuid.uuid4().hex


class BlobStore(Protocol):
    """Where published file contents live. Ids come from :func:`new_blob_id`."""

    def open(self, blob_id: str, offset: int = 0) -> BinaryIO:
        """A binary reader positioned at ``offset`` of the blob's plain content."""
        ...

    def size(self, blob_id: str) -> int:
        """The blob's plain size in bytes."""
        ...

    def put(self, blob_id: str, staged: Path) -> None:
        """Take ownership of ``staged`` (a complete, fsynced file) as ``blob_id``.

        After it returns the blob is durable and ``staged`` is gone; readers see
        the whole blob or none of it.
        """
        ...

    def put_many(self, items: Sequence[tuple[str, Path]]) -> None:
        """:meth:`put` for several blobs at once, made durable together (one directory
        sync per directory touched, not one per blob). On an error some of them may
        have been stored; the caller deletes them."""
        ...

    def delete(self, blob_id: str) -> None:
        """Remove the blob; a missing blob is not an error."""
        ...


def fsync_dir(path: Path) -> None:
    """Make a rename or unlink inside ``path`` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LocalBlobStore:
    """Blobs as files ``<root>/<id[:2]>/<id>``; the two-character shard keeps directories small."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self._known_shards: set[str] = set()

    def _path(self, blob_id: str) -> Path:
        # The id is checked, not trusted: a path is only ever built from 32 hex digits.
        if not _BLOB_ID.match(blob_id):
            raise ValueError(f"invalid blob id {blob_id!r}")
        return self.root / blob_id[:2] / blob_id

    def open(self, blob_id: str, offset: int = 0) -> BinaryIO:
        handle = self._path(blob_id).open("rb")
        if offset:
            handle.seek(offset)
        return handle

    def size(self, blob_id: str) -> int:
        return self._path(blob_id).stat().st_size

    def put(self, blob_id: str, staged: Path) -> None:
        fsync_dir(self._move_in(blob_id, staged))

    def put_many(self, items: Sequence[tuple[str, Path]]) -> None:
        # Blobs that share a shard (a batch can choose ids that do) cost one fsync.
        shards = {self._move_in(blob_id, staged) for blob_id, staged in items}
        for shard in sorted(shards):
            fsync_dir(shard)

    def _move_in(self, blob_id: str, staged: Path) -> Path:
        """Rename ``staged`` to its blob path; returns the directory to fsync."""
        target = self._path(blob_id)
        shard = target.parent
        if shard.name not in self._known_shards:
            shard.mkdir(exist_ok=True)
            fsync_dir(self.root)
            self._known_shards.add(shard.name)
        # The staged file was written and fsynced by its producer; the rename publishes
        # it in one step and the directory fsync makes the rename itself durable.
        try:
            os.replace(staged, target)
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
            self._copy_in(staged, target)
        return shard

    def _copy_in(self, staged: Path, target: Path) -> None:
        """Staging on another file system: copy to a temporary name, fsync, rename."""
        temp = target.with_name(target.name + ".tmp")
        with staged.open("rb") as src, temp.open("wb") as dst:
            shutil.copyfileobj(src, dst, 4 * 1024 * 1024)
            dst.flush()
            os.fsync(dst.fileno())
        os.replace(temp, target)
        staged.unlink()

    def delete(self, blob_id: str) -> None:
        try:
            self._path(blob_id).unlink()
        except FileNotFoundError:
            return
        log.debug("deleted blob %s", blob_id)
