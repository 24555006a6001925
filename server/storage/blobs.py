"""Blob storage: file contents stored by opaque id, never under a user-supplied path.

:class:`BlobStore` is the seam (an encrypting store can wrap another one);
:class:`LocalBlobStore` keeps blobs on local disk and publishes them atomically, each
with its per-chunk SHA-256 sums (``storage.integrity``) checked on every read.
"""

from __future__ import annotations

import errno
import io
import logging
import os
import re
import shutil
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import BinaryIO, Protocol, cast

from dropline.server.storage.integrity import (
    SUM_CHUNK,
    CheckedReader,
    compute_sums,
    read_sums,
    write_sums,
)

log = logging.getLogger(__name__)

_BLOB_ID = re.compile(r"^[0-9a-f]{32}$")
SUMS_DIR = "checksums"  # beside the blob root, in the data directory


def new_blob_id() -> str:
    return uuid.uuid4().hex


def check_blob_id(blob_id: str) -> None:
    """Refuse anything but 32 hex digits: store paths and keys are built from ids only."""
    if not _BLOB_ID.match(blob_id):
        raise ValueError(f"invalid blob id {blob_id!r}")


class BlobStore(Protocol):
    """Where published file contents live. Ids come from :func:`new_blob_id`."""

    def open(self, blob_id: str, offset: int = 0) -> BinaryIO:
        """A binary reader positioned at ``offset`` of the blob's plain content.

        Damage found in the chunk at ``offset`` raises ``integrity.BlobDamaged`` here;
        damage found further on raises it from a later read.
        """
        ...

    def size(self, blob_id: str) -> int:
        """The blob's plain size in bytes."""
        ...

    def put(self, blob_id: str, staged: Path, sums: bytes | None = None) -> None:
        """Take ownership of ``staged`` (a complete, fsynced file) as ``blob_id``.

        After it returns the blob is durable and ``staged`` is gone; readers see
        the whole blob or none of it. ``sums``: the file's chunk sums if the caller
        computed them on the way (``integrity.ChunkSummer``); otherwise they are read.
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


@dataclass(frozen=True, slots=True)
class StoredFile:
    """A file under the blob root: a blob (``blob_id`` set) or a leftover (a temporary
    copy, or sums whose blob is gone), with its size and modification time. ``path``: a
    file's path, or an object's key in an object store."""

    path: PurePath
    blob_id: str | None
    size: int
    mtime: float


class SweptBlobStore(BlobStore, Protocol):
    """A store as the sweeper sees it: everything it holds, and how to remove leftovers."""

    def stored(self) -> Iterator[StoredFile]: ...

    def footprint(self, blob_id: str) -> int: ...

    def leftover_name(self, found: StoredFile) -> str: ...

    def remove_leftover(self, found: StoredFile) -> None: ...


class LocalBlobStore:
    """Blobs as files ``<root>/<id[:2]>/<id>``, their sums as ``<sums root>/<id[:2]>/<id>``
    (by default the directory ``checksums`` beside the root, so the blob directory holds
    blobs only); the two-character shard keeps directories small."""

    def __init__(self, root: Path, sums_root: Path | None = None) -> None:
        self.root = root
        self.sums_root = sums_root or root.parent / SUMS_DIR
        self.root.mkdir(parents=True, exist_ok=True)
        self.sums_root.mkdir(parents=True, exist_ok=True)
        self._known_shards: set[str] = set()

    def _sums(self, blob_id: str) -> Path:
        return self.sums_root / blob_id[:2] / blob_id

    def _path(self, blob_id: str) -> Path:
        # The id is checked, not trusted: a path is only ever built from 32 hex digits.
        check_blob_id(blob_id)
        return self.root / blob_id[:2] / blob_id

    def open(self, blob_id: str, offset: int = 0) -> BinaryIO:
        path = self._path(blob_id)
        handle = path.open("rb", buffering=0)  # the checked reader reads whole chunks
        sums = read_sums(self._sums(blob_id))
        if sums is None:  # stored before sums existed: served as it is
            if offset:
                handle.seek(offset)
            return cast(BinaryIO, io.BufferedReader(handle))
        try:
            reader = CheckedReader(blob_id, handle, sums, offset)
        except BaseException:
            handle.close()
            raise
        return cast(BinaryIO, io.BufferedReader(reader, buffer_size=SUM_CHUNK))

    def open_unchecked(self, blob_id: str) -> BinaryIO:
        """The stored bytes without the sums check, for a reader that authenticates them
        itself (a sealed blob: AES-GCM checks every chunk; its sums would be a second check)."""
        return cast(BinaryIO, self._path(blob_id).open("rb", buffering=0))

    def size(self, blob_id: str) -> int:
        return self._path(blob_id).stat().st_size

    def put(self, blob_id: str, staged: Path, sums: bytes | None = None) -> None:
        shard = self._move_in(blob_id, staged, sums)
        fsync_dir(self.sums_root / shard.name)
        fsync_dir(shard)

    def put_many(self, items: Sequence[tuple[str, Path]]) -> None:
        # Blobs that share a shard (a batch can choose ids that do) cost one fsync.
        shards = {self._move_in(blob_id, staged) for blob_id, staged in items}
        for shard in sorted(shards):
            fsync_dir(self.sums_root / shard.name)
            fsync_dir(shard)

    def _move_in(self, blob_id: str, staged: Path, given: bytes | None = None) -> Path:
        """Rename ``staged`` to its blob path; returns the directory to fsync."""
        target = self._path(blob_id)
        shard = target.parent
        sums = self._sums(blob_id)
        if shard.name not in self._known_shards:
            shard.mkdir(exist_ok=True)
            fsync_dir(self.root)
            sums.parent.mkdir(exist_ok=True)
            fsync_dir(self.sums_root)
            self._known_shards.add(shard.name)
        # The sums go first (made durable with the blob's directory sync: see put), so a
        # reader never finds the blob without them; the staged file was written and
        # fsynced by its producer and is likely still cached.
        write_sums(sums, compute_sums(staged) if given is None else given)
        # The rename publishes the blob in one step and the directory fsync makes the
        # rename itself durable.
        try:
            try:
                os.replace(staged, target)
            except OSError as exc:
                if exc.errno != errno.EXDEV:
                    raise
                self._copy_in(staged, target)
        except BaseException:
            sums.unlink(missing_ok=True)
            raise
        return shard

    def _copy_in(self, staged: Path, target: Path) -> None:
        """Staging on another file system: copy to a temporary name, fsync, rename."""
        temp = target.with_name(target.name + ".tmp")
        try:
            with staged.open("rb") as src, temp.open("wb") as dst:
                shutil.copyfileobj(src, dst, 4 * 1024 * 1024)
                dst.flush()
                os.fsync(dst.fileno())
            os.replace(temp, target)
        except BaseException:
            temp.unlink(missing_ok=True)  # a full disk leaves no partial copy behind
            raise
        staged.unlink()

    def delete(self, blob_id: str) -> None:
        path = self._path(blob_id)
        try:
            path.unlink()
        except FileNotFoundError:
            self._sums(blob_id).unlink(missing_ok=True)
            return
        self._sums(blob_id).unlink(missing_ok=True)
        log.debug("deleted blob %s", blob_id)

    def footprint(self, blob_id: str) -> int:
        """Bytes the blob takes on disk with its sums (0 when it is gone)."""
        total = 0
        for path in (self._path(blob_id), self._sums(blob_id)):
            try:
                total += path.stat().st_size
            except FileNotFoundError:
                continue
        return total

    def stored(self) -> Iterator[StoredFile]:
        """Every file of the store (for the sweeper): blobs with their id (the size
        counting their sums), and leftovers without one (temporary copies, sums whose
        blob is gone). Files vanishing meanwhile are skipped."""
        blobs: set[str] = set()
        for found in _files(self.root):
            name = found.path.name
            if _BLOB_ID.match(name) and name.startswith(found.path.parent.name):
                blobs.add(name)
                try:
                    extra = self._sums(name).stat().st_size
                except FileNotFoundError:
                    extra = 0
                yield StoredFile(found.path, name, found.size + extra, found.mtime)
            else:
                yield found
        for found in _files(self.sums_root):
            if found.path.name not in blobs and not self._path_exists(found.path.name):
                yield found

    def leftover_name(self, found: StoredFile) -> str:
        """A leftover's name for the sweeper's report: its path in the data directory."""
        return str(found.path.relative_to(self.root.parent))

    def remove_leftover(self, found: StoredFile) -> None:
        Path(found.path).unlink(missing_ok=True)

    def _path_exists(self, name: str) -> bool:
        return bool(_BLOB_ID.match(name)) and self._path(name).exists()


def _files(root: Path) -> Iterator[StoredFile]:
    """The files in ``root``'s two-character shards."""
    if not root.is_dir():
        return
    for shard in sorted(root.iterdir()):
        if not shard.is_dir() or len(shard.name) != 2:
            continue
        for entry in os.scandir(shard):
            try:
                stat = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            if entry.is_file(follow_symlinks=False):
                yield StoredFile(Path(entry.path), None, stat.st_size, stat.st_mtime)
