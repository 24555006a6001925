"""Which uploads carry a per-chunk ``Upload-Checksum``: none when the whole file's SHA-256
was declared at creation (the server checks every byte at publish), each chunk otherwise.
Against the real server on loopback."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import httpx
import pytest

from dropline.sdk import upload_reads
from dropline.sdk.client import DroplineClient
from dropline.sdk.credentials import ApiKeyCredentials
from dropline.sdk.errors import IntegrityError, NotFoundError
from dropline.sdk.resumable import upload_file
from tests.sdk.conftest import QUICK_RETRY
from tests.support.faults import FaultTransport
from tests.support.live import LiveServer

CHUNK = 64 * 1024

pytestmark = pytest.mark.anyio


def payload(size: int) -> bytes:
    out = bytearray()
    block = b"seed"
    while len(out) < size:
        block = hashlib.sha256(block).digest()
        out += block
    return bytes(out[:size])


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


class Checksums:
    """The ``Upload-Checksum`` of every upload request (None: sent without one), seen by a
    matcher that never injects anything."""

    def __init__(self, transport: FaultTransport) -> None:
        self.patch: list[str | None] = []
        self.post: list[str | None] = []

        def look(request: httpx.Request) -> bool:
            if request.url.path.startswith("/api/v1/uploads"):
                seen = self.patch if request.method == "PATCH" else self.post
                if request.method in ("PATCH", "POST"):
                    seen.append(request.headers.get("upload-checksum"))
            return False

        transport.inject(look, times=1_000_000)


async def test_a_declared_upload_sends_its_chunks_without_checksums(
    api: DroplineClient, transport: FaultTransport, tmp_path: Path
) -> None:
    data = payload(5 * CHUNK + 3)
    seen = Checksums(transport)
    local = write(tmp_path, "declared.bin", data)
    entry = await upload_file(
        api, local, "/declared.bin", sha256=hashlib.sha256(data).hexdigest(), chunk_size=CHUNK
    )
    assert entry.sha256 == hashlib.sha256(data).hexdigest()
    assert seen.patch == [None] * 6
    assert transport.body_bytes["PATCH"] == len(data)


async def test_a_declared_single_chunk_upload_goes_without_a_checksum(
    api: DroplineClient, transport: FaultTransport, tmp_path: Path
) -> None:
    data = payload(1000)
    seen = Checksums(transport)
    local = write(tmp_path, "one.bin", data)
    entry = await upload_file(api, local, "/one.bin", sha256=hashlib.sha256(data).hexdigest())
    assert entry.sha256 == hashlib.sha256(data).hexdigest()
    assert seen.post == [None] and seen.patch == []


async def test_an_undeclared_upload_checksums_every_chunk(
    api: DroplineClient, transport: FaultTransport, tmp_path: Path
) -> None:
    data = payload(3 * CHUNK)
    seen = Checksums(transport)
    entry = await upload_file(api, write(tmp_path, "u.bin", data), "/u.bin", chunk_size=CHUNK)
    assert entry.sha256 == hashlib.sha256(data).hexdigest()
    assert len(seen.patch) == 3 and all(c and c.startswith("sha256 ") for c in seen.patch)


async def test_resuming_an_upload_declared_only_at_its_end_keeps_checksums(
    api: DroplineClient, transport: FaultTransport, tmp_path: Path
) -> None:
    data = payload(4 * CHUNK)
    # An earlier run hashed as it went (nothing declared at creation) and sent one chunk.
    session = await api.create_upload("/late.bin", len(data))
    await api.append(session.url, 0, data[:CHUNK])
    seen = Checksums(transport)
    entry = await upload_file(
        api,
        write(tmp_path, "late.bin", data),
        "/late.bin",
        chunk_size=CHUNK,
        resume_url=session.url,
    )
    assert entry.sha256 == hashlib.sha256(data).hexdigest()
    assert len(seen.patch) == 3 and all(seen.patch)


class Damaging(httpx.AsyncBaseTransport):
    """Flips one byte in the body of the ``nth`` PATCH on its way to the real server (what a
    checksum-less chunk damaged in transit looks like to the server)."""

    def __init__(self, nth: int) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.nth = nth
        self.patches = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "PATCH":
            self.patches += 1
            if self.patches == self.nth:
                body = bytearray(await request.aread())  # a chunk streamed from the file
                body[len(body) // 2] ^= 0x01
                request = httpx.Request(
                    request.method, request.url, headers=request.headers, content=bytes(body)
                )
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_a_declared_upload_damaged_on_the_way_is_refused_at_publish(
    live_server: LiveServer, api_key: str, tmp_path: Path
) -> None:
    data = payload(4 * CHUNK)
    damaging = Damaging(nth=2)
    async with DroplineClient(
        live_server.url, ApiKeyCredentials(api_key), retry=QUICK_RETRY, transport=damaging
    ) as api:
        local = write(tmp_path, "damaged.bin", data)
        with pytest.raises(IntegrityError):
            await upload_file(
                api,
                local,
                "/damaged.bin",
                sha256=hashlib.sha256(data).hexdigest(),
                chunk_size=CHUNK,
            )
        with pytest.raises(NotFoundError):
            await api.metadata("/damaged.bin")
        assert damaging.patches == 4  # no checksum stopped the damaged chunk on its own
        # Sent again, undamaged, it is published.
        entry = await upload_file(
            api, local, "/damaged.bin", sha256=hashlib.sha256(data).hexdigest(), chunk_size=CHUNK
        )
        assert entry.sha256 == hashlib.sha256(data).hexdigest()
        async with api.open_content(entry.id) as stream:
            assert b"".join([c async for c in stream.chunks()]) == data


async def test_a_declared_upload_cut_mid_chunk_resumes_verified(
    api: DroplineClient, transport: FaultTransport, tmp_path: Path
) -> None:
    data = os.urandom(8 * CHUNK)
    calls = {"n": 0}

    def third_patch(request: httpx.Request) -> bool:
        if request.method == "PATCH":
            calls["n"] += 1
            return calls["n"] == 3
        return False

    transport.inject(third_patch, cut_request_after=CHUNK // 2)
    entry = await upload_file(
        api,
        write(tmp_path, "cut.bin", data),
        "/cut.bin",
        sha256=hashlib.sha256(data).hexdigest(),
        chunk_size=CHUNK,
    )
    assert entry.sha256 == hashlib.sha256(data).hexdigest()
    assert transport.count("HEAD") >= 1  # it asked the server where to go on
    assert transport.body_bytes["PATCH"] <= len(data) + CHUNK // 2
    async with api.open_content(entry.id) as stream:
        assert b"".join([c async for c in stream.chunks()]) == data


async def test_a_declared_upload_streams_big_chunks_in_pieces(
    api: DroplineClient, transport: FaultTransport, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(upload_reads, "PIECE_SIZE", 16 * 1024)
    reads: list[int] = []
    real = os.pread

    def pread(fd: int, size: int, offset: int) -> bytes:
        reads.append(size)
        return real(fd, size, offset)

    monkeypatch.setattr(os, "pread", pread)
    paced: list[int] = []

    async def limiter(n: int) -> None:
        paced.append(n)

    data = os.urandom(3 * CHUNK + 5000)
    entry = await upload_file(
        api,
        write(tmp_path, "s.bin", data),
        "/s.bin",
        sha256=hashlib.sha256(data).hexdigest(),
        chunk_size=CHUNK,
        limiter=limiter,
    )
    assert entry.sha256 == hashlib.sha256(data).hexdigest()
    assert transport.count("PATCH") == 4
    assert max(reads) == 16 * 1024 and sum(reads) == len(data)  # never a chunk at once
    assert paced == reads  # paced piece by piece as they go
    async with api.open_content(entry.id) as stream:
        assert b"".join([c async for c in stream.chunks()]) == data


async def test_a_streamed_chunk_reads_the_same_bytes_each_time_it_is_sent(
    tmp_path: Path,
) -> None:
    data = os.urandom(5 * upload_reads.PIECE_SIZE // 2)
    with write(tmp_path, "again.bin", data).open("rb", buffering=0) as fh:
        reader = upload_reads.ChunkReader(fh.fileno(), len(data), len(data), None, False)
        body = reader.body(0, None)
        first = b"".join([piece async for piece in body])
        second = b"".join([piece async for piece in body])  # an auth flow's second send
        await reader.discard()
    assert first == second == data and len(body) == len(data)
