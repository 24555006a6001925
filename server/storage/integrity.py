"""Blob integrity: per-chunk SHA-256 sums kept beside every blob, and the reader that
checks each chunk before any byte of it is handed out.

What is checked when. A download may be a Range of a huge file, so hashing the whole
blob on every read is out. Instead, when a blob is stored, the SHA-256 of each 1 MiB
chunk is written to its sums file (the blob's size in 8 bytes, then 32 bytes a chunk:
32 KiB per GiB; in ``<data dir>/checksums``, see ``storage.blobs``), and a reader
verifies every chunk it touches before it returns a byte of that chunk:

- ``open`` verifies the chunk holding the first byte asked for, so damage there is an
  error answer (``content-damaged``) before anything is sent;
- each later chunk is verified as the read reaches it, so damage further on aborts the
  stream mid-way: the client sees a broken transfer, never a complete wrong file;
- a blob whose size differs from the one its sums record (truncated, extended) is
  damaged at open.

Sealed blobs (``storage.encryption``) are checked the same way here, and their chunks are
authenticated by AES-GCM as well. A blob stored before sums existed (no sums file)
is served unchecked; the whole-file SHA-256 in its revision row still lets a client
verify it.
"""

from __future__ import annotations

import hashlib
import os
import struct
from pathlib import Path
from typing import Any

from dropline.server.problems import Problem
from dropline.server.storage.positioned import PositionedReader

SUM_CHUNK = 1024 * 1024
DIGEST_SIZE = 32
SIZE_FIELD = 8


class BlobDamaged(Problem):
    """A blob whose bytes no longer match their sums (or that fails authentication).

    A :class:`Problem` so that, raised before a response started, it is answered as
    ``content-damaged``; raised mid-stream, it aborts the stream.
    """

    def __init__(self, blob_id: str, reason: str) -> None:
        super().__init__(
            "content-damaged",
            "the stored bytes of this file no longer match their checksum; nothing "
            "damaged was sent. Restore the file from a backup or an earlier version",
        )
        self.blob_id = blob_id
        self.reason = reason


def chunk_count(size: int) -> int:
    """Chunks of a blob of ``size`` bytes (an empty blob has one, empty, chunk)."""
    return max(1, -(-size // SUM_CHUNK))


def compute_sums(path: Path) -> bytes:
    """The sums of the file at ``path``: its size, then the SHA-256 of each ``SUM_CHUNK``."""
    digests = bytearray()
    size = 0
    with path.open("rb") as handle:
        # A buffer no bigger than the file: most blobs of a batch are a few KiB, and a
        # fresh 1 MiB buffer for each cost more than hashing them.
        buf = bytearray(min(SUM_CHUNK, os.fstat(handle.fileno()).st_size + 1))
        view = memoryview(buf)
        while True:
            n = handle.readinto(buf)  # buffered: full chunks until the end of the file
            if n == 0 and digests:
                break
            digests += hashlib.sha256(view[:n]).digest()
            size += n
            if n < SUM_CHUNK:
                break
    return struct.pack(">Q", size) + bytes(digests)


class ChunkSummer:
    """The sums of bytes fed in order (an upload's, while they are received), so a publish
    need not read the file again to compute them. Quacks like a hashlib object for the
    upload's list of hashers."""

    def __init__(self) -> None:
        self._current = hashlib.sha256()
        self._filled = 0
        self._digests: list[bytes] = []
        self.size = 0

    def update(self, data: Any) -> None:
        view = memoryview(data).cast("B")
        self.size += len(view)
        while view:
            take = min(len(view), SUM_CHUNK - self._filled)
            self._current.update(view[:take])
            self._filled += take
            view = view[take:]
            if self._filled == SUM_CHUNK:
                self._digests.append(self._current.digest())
                self._current = hashlib.sha256()
                self._filled = 0

    def copy(self) -> ChunkSummer:
        twin = ChunkSummer()
        twin._current = self._current.copy()
        twin._filled = self._filled
        twin._digests = list(self._digests)
        twin.size = self.size
        return twin

    def sums(self) -> bytes:
        """The sums of everything fed so far, as :func:`compute_sums` writes them."""
        digests = list(self._digests)
        if self._filled or not digests:
            digests.append(self._current.digest())
        return struct.pack(">Q", self.size) + b"".join(digests)


def write_sums(target: Path, sums: bytes) -> None:
    """Write ``sums`` to ``target``, fsynced (the caller syncs the directory). A failure
    (a full disk) leaves no partial sums file behind."""
    temp = target.with_name(target.name + ".tmp")
    try:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            view = memoryview(sums)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, target)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def read_sums(path: Path) -> bytes | None:
    """A blob's sums, or None when it has none (stored before sums existed)."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


class CheckedReader(PositionedReader):
    """The bytes of one blob, each chunk verified against its sums before it is read."""

    def __init__(
        self, blob_id: str, handle: Any, sums: bytes, offset: int, size: int | None = None
    ) -> None:
        """``size``: the stored size, for a handle that is no file (an object store's)."""
        super().__init__(os.fstat(handle.fileno()).st_size if size is None else size, offset)
        self._blob_id = blob_id
        self._handle = handle
        self._sums = sums[SIZE_FIELD:]
        self._index = -1
        self._buffer = memoryview(bytearray(SUM_CHUNK))
        self._chunk = self._buffer[:0]
        recorded = struct.unpack(">Q", sums[:SIZE_FIELD])[0] if len(sums) >= SIZE_FIELD else -1
        if self._size != recorded or len(self._sums) != chunk_count(recorded) * DIGEST_SIZE:
            raise BlobDamaged(blob_id, f"size {self._size} differs from the {recorded} stored")
        if offset < self._size:
            self._load(offset // SUM_CHUNK)  # damage where the read starts: an error answer

    def _fill(self, index: int, into: memoryview) -> int:
        """Read chunk ``index`` into ``into`` and verify it; returns its length."""
        self._handle.seek(index * SUM_CHUNK)
        want = min(SUM_CHUNK, self._size - index * SUM_CHUNK)
        got = 0
        while got < want:
            n = self._handle.readinto(into[got:want])
            if not n:
                break  # shrunk since open: the digest below fails
            got += n
        expected = self._sums[index * DIGEST_SIZE : (index + 1) * DIGEST_SIZE]
        if hashlib.sha256(into[:got]).digest() != expected:
            raise BlobDamaged(self._blob_id, f"chunk {index} does not match its SHA-256")
        return got

    def _load(self, index: int) -> None:
        self._index = -1
        self._chunk = self._buffer[: self._fill(index, self._buffer)]
        self._index = index

    def readinto(self, buffer: Any) -> int:
        if self._pos >= self._size:
            return 0
        index, start = divmod(self._pos, SUM_CHUNK)
        target = memoryview(buffer).cast("B")
        if index != self._index and start == 0 and len(target) >= SUM_CHUNK:
            # A whole chunk wanted: read and verify it in the caller's buffer, no copy.
            # On damage the exception means the caller never uses those bytes.
            n = self._fill(index, target)
            self._pos += n
            return n
        if index != self._index:
            self._load(index)
        piece = self._chunk[start : start + len(target)]
        target[: len(piece)] = piece
        self._pos += len(piece)
        return len(piece)

    def close(self) -> None:
        self._handle.close()
        super().close()


__all__ = [
    "SUM_CHUNK",
    "BlobDamaged",
    "CheckedReader",
    "ChunkSummer",
    "chunk_count",
    "compute_sums",
    "read_sums",
    "write_sums",
]
