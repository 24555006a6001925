"""Receiving a PATCH body: each piece's write-out to the disk starts as it lands, so the
fsync that ends the request has little left; the bytes and hashes are unchanged by it."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from dropline.server.storage import writeback
from dropline.server.uploads import receive as receiving
from dropline.server.uploads.live import LiveUploads
from dropline.server.uploads.staging import StagedFile

pytestmark = pytest.mark.anyio
KIB = 1024


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def body_of(data: bytes, piece: int) -> AsyncIterator[bytes]:
    for start in range(0, len(data), piece):
        yield data[start : start + piece]


async def test_every_piece_but_the_fsynced_last_starts_its_write_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    started: list[tuple[int, int]] = []
    real = writeback.start_writeback

    def spy(fd: int, offset: int, length: int) -> None:
        started.append((offset, length))
        real(fd, offset, length)

    monkeypatch.setattr(receiving, "start_writeback", spy)
    monkeypatch.setattr(receiving, "PIECE_SIZE", 256 * KIB)
    data = os.urandom(1024 * KIB + 100)
    uploads = LiveUploads()
    staged = StagedFile(tmp_path / "u.part")
    hasher = hashlib.sha256()
    try:
        written, cut = await receiving.receive(
            uploads, staged, 0, len(data), body_of(data, 64 * KIB), [hasher]
        )
    finally:
        staged.close()
        uploads.close()
    assert (written, cut) == (len(data), False)
    assert started == [(i * 256 * KIB, 256 * KIB) for i in range(4)]  # the last 100 B: fsync
    assert (tmp_path / "u.part").read_bytes() == data
    assert hasher.hexdigest() == hashlib.sha256(data).hexdigest()


def test_write_out_of_a_range_leaves_the_bytes_as_written(tmp_path: Path) -> None:
    path = tmp_path / "f"
    data = os.urandom(3 * 1024 * KIB)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        os.write(fd, data)
        writeback.start_writeback(fd, 0, len(data))
        writeback.start_writeback(fd, 0, 0)  # nothing to start: no call, no error
        os.fsync(fd)
    finally:
        os.close(fd)
    assert path.read_bytes() == data
