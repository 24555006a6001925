"""A server killed while it published an upload: every byte had arrived and its offset was
recorded, the publish had not committed. After the restart the upload resumes with the
server's state (complete, unpublished) and is published from the staged bytes: not one
byte of the file goes up again. Killed just after the publish committed, the file is
recognised as done by its SHA-256."""

from __future__ import annotations

import hashlib
import os
import sqlite3
from pathlib import Path

import pytest

from dropline.sdk.resumable import upload_file
from dropline.sdk.wire import chunk_checksum
from tests.support.live import ServerProcess
from tests.sync.engine_helpers import client_for, sha

pytestmark = pytest.mark.anyio

MiB = 1024 * 1024
CHUNK = MiB


class Counting:
    """The bytes the client's PATCH requests carry."""

    def __init__(self) -> None:
        self.patched = 0

    async def __call__(self, n: int) -> None:
        self.patched += n


async def test_an_upload_whose_publish_was_killed_is_published_from_its_staged_bytes(
    tmp_path: Path, own_server: tuple[ServerProcess, str]
) -> None:
    server, key = own_server
    data = os.urandom(3 * CHUNK)
    src = tmp_path / "big.bin"
    src.write_bytes(data)
    async with client_for(server.url, key) as sdk:
        session, _ = await sdk.start_upload("/big.bin", len(data), sha256=sha(data))
        for offset in range(0, 2 * CHUNK, CHUNK):
            part = data[offset : offset + CHUNK]
            await sdk.append(session.url, offset, part, chunk_checksum(part))
    # The last PATCH arrived whole and its offset was recorded; then the server died
    # before the publish committed.
    server.kill()
    upload_id = session.url.rstrip("/").rsplit("/", 1)[1]
    with (server.data_dir / "uploads" / f"{upload_id}.part").open("ab") as staged:
        staged.write(data[2 * CHUNK :])
    db = sqlite3.connect(server.data_dir / "dropline.db")
    with db:
        db.execute('UPDATE uploads SET "offset" = ? WHERE id = ?', (len(data), upload_id))
    db.close()
    server.start()

    sent = Counting()
    async with client_for(server.url, key) as sdk:
        entry = await upload_file(
            sdk, src, "/big.bin", resume_url=session.url, chunk_size=CHUNK, limiter=sent
        )
        assert entry.sha256 == hashlib.sha256(data).hexdigest()
        assert sent.patched == 0
        listed = await sdk.metadata("/big.bin")
        assert listed.sha256 == sha(data)
        # Killed after the publish committed: the same call finds it done, sends nothing.
        again = await upload_file(
            sdk, src, "/big.bin", resume_url=session.url, chunk_size=CHUNK, limiter=sent
        )
        assert again.id == entry.id and again.rev == entry.rev
        assert sent.patched == 0
