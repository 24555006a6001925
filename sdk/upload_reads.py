"""Reading a file for its upload: whole chunks (hashed for ``Upload-Checksum`` and the
running whole-file SHA-256 where the upload needs them) read one chunk ahead of the
sender, or a chunk streamed as the request body in pieces, so a big chunk never needs a
buffer of its size. Reads run in worker threads, off the event loop."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from dropline.sdk.errors import IntegrityError
from dropline.sdk.wire import chunk_checksum

# A streamed chunk's pieces: fresh 1 MiB buffers come back from the allocator's free
# list, where fresh 16-64 MiB ones cost page faults on every chunk.
PIECE_SIZE = 1024 * 1024

Limiter = Callable[[int], Awaitable[None]]  # awaited with each piece's size; may sleep


class Running:
    """The whole file's SHA-256, fed from the chunks as they are read for sending (one read
    of the file serves both the chunk checksums and the whole-file hash)."""

    def __init__(self) -> None:
        self.hasher = hashlib.sha256()
        self.position = 0  # bytes [0, position) are in the hash

    def take(self, fd: int, offset: int, data: bytes) -> None:
        """Feed the part of ``data`` (the file's bytes at ``offset``) not hashed yet."""
        if offset > self.position:
            # The server is ahead of what was read (an answer got lost): read the gap.
            self.hasher.update(pread_exact(fd, self.position, offset - self.position))
            self.position = offset
        end = offset + len(data)
        if end > self.position:
            self.hasher.update(memoryview(data)[self.position - offset :])
            self.position = end

    def hexdigest(self) -> str:
        return self.hasher.hexdigest()


def pread_exact(fd: int, offset: int, size: int) -> bytes:
    data = os.pread(fd, size, offset)
    if len(data) != size:
        raise IntegrityError(
            "The file got shorter while it was being uploaded; it will be sent again.",
            title="File changed during upload",
        )
    return data


def _read_chunk(
    fd: int, offset: int, size: int, running: Running | None, checksummed: bool
) -> tuple[bytes, str]:
    """One chunk and its ``Upload-Checksum`` ("" when ``checksummed`` is off), hashed into
    ``running`` too (hashlib releases the GIL)."""
    data = pread_exact(fd, offset, size)
    if running is not None:
        running.take(fd, offset, data)
    return data, chunk_checksum(data) if checksummed else ""


class ChunkReader:
    """The chunks of one open file: read whole one chunk ahead of the sender, or (for an
    upload that sends no checksums) streamed in pieces by :meth:`body`."""

    def __init__(
        self, fd: int, length: int, chunk_size: int, running: Running | None, checksummed: bool
    ) -> None:
        self.fd = fd
        self.length = length
        self.chunk_size = chunk_size
        self.running = running
        self.checksummed = checksummed
        self._ahead: tuple[int, asyncio.Future[tuple[bytes, str]]] | None = None
        self._pieces: set[asyncio.Future[bytes]] = set()  # streamed reads under way

    @property
    def streams(self) -> bool:
        """Chunks go as streamed bodies: nothing needs a chunk whole before it is sent."""
        return not self.checksummed and self.running is None

    def _start(self, offset: int) -> asyncio.Future[tuple[bytes, str]]:
        size = min(self.chunk_size, self.length - offset)
        return asyncio.ensure_future(
            asyncio.to_thread(_read_chunk, self.fd, offset, size, self.running, self.checksummed)
        )

    async def read(self, offset: int) -> tuple[bytes, str]:
        if self._ahead is not None and self._ahead[0] == offset:
            task = self._ahead[1]
        else:
            await self.discard()
            task = self._start(offset)
        self._ahead = None
        data, checksum = await task
        following = offset + len(data)
        if following < self.length and not self.streams:
            self._ahead = (following, self._start(following))
        return data, checksum

    def body(self, offset: int, limiter: Limiter | None) -> StreamedChunk:
        """The chunk at ``offset`` as a request body read piece by piece."""
        return StreamedChunk(self, offset, min(self.chunk_size, self.length - offset), limiter)

    def _piece(self, offset: int, size: int) -> asyncio.Future[bytes]:
        future = asyncio.ensure_future(asyncio.to_thread(pread_exact, self.fd, offset, size))
        self._pieces.add(future)
        future.add_done_callback(self._pieces.discard)
        return future

    async def discard(self) -> None:
        """Let every read under way finish (a thread cannot be cancelled) before the file
        is closed; their bytes are not wanted any more."""
        waiting: list[asyncio.Future[Any]] = list(self._pieces)
        if self._ahead is not None:
            waiting.append(self._ahead[1])
            self._ahead = None
        for task in waiting:
            with contextlib.suppress(Exception):
                await task


class StreamedChunk:
    """Bytes [offset, offset + size) of the file as a request body: read in pieces, one
    piece ahead of the socket. Iterable again from the start (an authentication flow may
    send a request twice); ``limiter`` is awaited with each piece as it goes."""

    def __init__(
        self, reader: ChunkReader, offset: int, size: int, limiter: Limiter | None
    ) -> None:
        self.reader = reader
        self.offset = offset
        self.size = size
        self.limiter = limiter

    def __len__(self) -> int:
        return self.size

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._pieces()

    async def _pieces(self) -> AsyncIterator[bytes]:
        position, end = self.offset, self.offset + self.size
        ahead = self.reader._piece(position, min(PIECE_SIZE, end - position)) if self.size else None
        while ahead is not None:
            data = await ahead
            position += len(data)
            ahead = (
                self.reader._piece(position, min(PIECE_SIZE, end - position))
                if position < end
                else None
            )
            if self.limiter is not None:
                await self.limiter(len(data))
            yield data
