"""A big download is read from the socket in large pieces, not httpcore's 64 KiB: each read
is a trip through the parser and the event loop, which was a third of the agent's CPU."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import httpcore
import pytest

from dropline.sdk.client import DroplineClient
from dropline.sdk.resumable import upload_file
from dropline.sdk.wire import RESPONSE_READ_SIZE

pytestmark = pytest.mark.anyio

SIZE = 24 * 1024 * 1024


async def test_a_big_download_arrives_in_pieces_bigger_than_64_kib(
    api: DroplineClient, tmp_path: Path
) -> None:
    assert httpcore.AsyncHTTP11Connection.READ_NUM_BYTES >= RESPONSE_READ_SIZE
    data = os.urandom(SIZE)
    source = tmp_path / "big.bin"
    source.write_bytes(data)
    entry = await upload_file(api, source, "/big.bin")

    sizes: list[int] = []
    digest = hashlib.sha256()
    async with api.open_content(entry.id) as stream:
        async for chunk in stream.chunks():
            sizes.append(len(chunk))
            digest.update(chunk)
    assert digest.hexdigest() == hashlib.sha256(data).hexdigest() == entry.sha256
    # Pieces come as the socket has them; with 64 KiB reads none could exceed 64 KiB.
    assert max(sizes) > 64 * 1024
    assert len(sizes) < SIZE // (64 * 1024)
