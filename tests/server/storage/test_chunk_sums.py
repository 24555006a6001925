"""Chunk sums taken while an upload's bytes arrive are exactly the ones the blob store
would compute from the finished file, whatever the pieces; and a published upload's
checksums file matches its blob."""

from __future__ import annotations

import itertools
import os
import random
from pathlib import Path

import httpx
import pytest

from dropline.server.storage.integrity import SUM_CHUNK, ChunkSummer, compute_sums
from tests.server.tus import create, patch, sha256
from tests.support.live import LiveServer


@pytest.mark.parametrize(
    "size", [0, 1, SUM_CHUNK - 1, SUM_CHUNK, SUM_CHUNK + 1, 3 * SUM_CHUNK + 12345]
)
def test_streamed_sums_equal_the_sums_of_the_file(tmp_path: Path, size: int) -> None:
    data = os.urandom(size)
    path = tmp_path / "file"
    path.write_bytes(data)
    summer = ChunkSummer()
    rng = random.Random(size)
    at = 0
    while at < size:
        step = rng.choice([1, 100, 65536, SUM_CHUNK - 3, 2 * SUM_CHUNK])
        summer.update(memoryview(data)[at : at + step])
        at += step
    assert summer.sums() == compute_sums(path)


def test_a_copy_is_independent(tmp_path: Path) -> None:
    summer = ChunkSummer()
    summer.update(b"a" * (SUM_CHUNK + 10))
    before = summer.copy()
    summer.update(b"wrong bytes, later undone")
    path = tmp_path / "file"
    path.write_bytes(b"a" * (SUM_CHUNK + 10))
    assert before.sums() == compute_sums(path)
    assert summer.sums() != before.sums()


def test_an_upload_in_odd_pieces_stores_the_sums_of_its_blob(
    live_server: LiveServer, client: httpx.Client
) -> None:
    data = os.urandom(3 * SUM_CHUNK + 777)
    location = create(client, len(data), path="/pieces.bin", sha256=sha256(data)).headers[
        "Location"
    ]
    cuts = [0, 5, SUM_CHUNK + 3, 2 * SUM_CHUNK + 100, len(data)]
    # A piece refused by its checksum in the middle must leave the sums as they were.
    bad = patch(client, location, 5, data[5:1000], **{"Upload-Checksum": "sha256 AAAA"})
    assert bad.status_code in (400, 460)
    for start, end in itertools.pairwise(cuts):
        assert patch(client, location, start, data[start:end]).status_code == 204
    blobs = [p for p in live_server.settings.blob_dir.rglob("*") if p.is_file()]
    [blob] = blobs
    sums = live_server.settings.data_dir / "checksums" / blob.parent.name / blob.name
    assert sums.read_bytes() == compute_sums(blob)
