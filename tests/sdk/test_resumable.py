"""Resumable upload and download of one file against the real server on loopback."""

from __future__ import annotations

import dataclasses
import hashlib
import os
from pathlib import Path

import httpx
import pytest

from dropline.sdk import resumable
from dropline.sdk.client import DroplineClient
from dropline.sdk.errors import IntegrityError, NotFoundError, PreconditionFailedError
from dropline.sdk.models import Entry
from dropline.sdk.resumable import default_partial_path, download_file, upload_file
from tests.support.faults import FaultTransport, route

CHUNK = 64 * 1024
PATCH = route("PATCH", "/api/v1/uploads/")
CONTENT = route("GET", "/api/v1/files/")

pytestmark = pytest.mark.anyio


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def payload(size: int, seed: int = 1) -> bytes:
    # Distinct, non-repeating bytes so a misplaced chunk cannot hash the same.
    out = bytearray()
    block = seed.to_bytes(8, "big")
    while len(out) < size:
        block = hashlib.sha256(block).digest()
        out += block
    return bytes(out[:size])


def content_gets(transport: FaultTransport) -> int:
    return sum(1 for m, p in transport.seen if m == "GET" and p.endswith("/content"))


def write(tmp_path: Path, name: str, data: bytes, mtime: float = 1_700_000_000.25) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    os.utime(path, (mtime, mtime))
    return path


async def read_remote(api: DroplineClient, entry: Entry) -> bytes:
    async with api.open_content(entry.id) as stream:
        return b"".join([c async for c in stream.chunks()])


# -- upload ---------------------------------------------------------------------------


async def test_small_file_goes_up_in_one_request(
    api: DroplineClient, transport: FaultTransport, tmp_path: Path
) -> None:
    data = payload(1000)
    local = write(tmp_path, "small.txt", data)
    sessions: list[str] = []
    entry = await upload_file(api, local, "/in/small.txt", on_session=sessions.append)
    assert entry.path == "/in/small.txt" and entry.size == 1000 and entry.sha256 == sha(data)
    assert entry.mtime == 1_700_000_000.25
    assert transport.count("POST", "/api/v1/uploads") == 1
    assert transport.count("PATCH") == 0
    assert len(sessions) == 1
    assert await read_remote(api, entry) == data


async def test_small_upload_takes_its_entry_from_the_answer(
    api: DroplineClient, transport: FaultTransport, tmp_path: Path
) -> None:
    local = write(tmp_path, "answer.txt", b"answered")
    entry = await upload_file(api, local, "/answer.txt")
    assert [m for m, _p in transport.seen] == ["POST"]  # no GET of the entry afterwards
    assert entry == await api.metadata("/answer.txt")


class ReadCounter:
    """Counts the bytes ``os.pread`` reads and fails any whole-file pre-hash."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.bytes = 0
        real = os.pread

        def pread(fd: int, size: int, offset: int) -> bytes:
            data = real(fd, size, offset)
            self.bytes += len(data)
            return data

        def no_prehash(*_args: object, **_kwargs: object) -> str:
            raise AssertionError("the file was hashed in a pass of its own")

        monkeypatch.setattr(resumable.os, "pread", pread)
        monkeypatch.setattr(resumable, "sha256_file", no_prehash)


@pytest.mark.parametrize("size", [0, 1000, CHUNK, 5 * CHUNK + 17])
async def test_without_a_known_hash_every_byte_is_read_once(
    api: DroplineClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, size: int
) -> None:
    data = payload(size, seed=size)
    local = write(tmp_path, "once.bin", data)
    reads = ReadCounter(monkeypatch)
    entry = await upload_file(api, local, "/once.bin", chunk_size=CHUNK)
    assert entry.sha256 == sha(data)
    assert reads.bytes == size
    assert await read_remote(api, entry) == data


async def test_a_known_hash_is_not_computed_again(
    api: DroplineClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = payload(3 * CHUNK + 5)
    local = write(tmp_path, "known.bin", data)
    reads = ReadCounter(monkeypatch)
    entry = await upload_file(api, local, "/known.bin", sha256=sha(data), chunk_size=CHUNK)
    assert entry.sha256 == sha(data)
    assert reads.bytes == len(data)


async def test_a_file_changed_during_a_hash_as_you_go_upload_is_not_published(
    api: DroplineClient, transport: FaultTransport, tmp_path: Path
) -> None:
    data = payload(4 * CHUNK)
    local = write(tmp_path, "moving.bin", data)

    def edit_midway(done: int, _total: int) -> None:
        if done == 2 * CHUNK:  # someone saves the file while it goes up
            write(tmp_path, "moving.bin", payload(4 * CHUNK, seed=9), mtime=1_700_000_100.0)

    with pytest.raises(IntegrityError, match="changed while it was being uploaded"):
        await upload_file(api, local, "/moving.bin", chunk_size=CHUNK, on_progress=edit_midway)
    with pytest.raises(NotFoundError):
        await api.metadata("/moving.bin")
    assert transport.count("DELETE", "/api/v1/uploads/") == 1  # the upload was terminated


async def test_resuming_an_undeclared_upload_over_changed_bytes_publishes_nothing(
    api: DroplineClient, tmp_path: Path
) -> None:
    old = payload(4 * CHUNK, seed=1)
    new = payload(4 * CHUNK, seed=2)
    # An earlier run hashed as it went (nothing declared), sent half, then died; the
    # file was then replaced by other bytes of the same size.
    session = await api.create_upload("/swapped.bin", len(old))
    await api.append(session.url, 0, old[: 2 * CHUNK])
    local = write(tmp_path, "swapped.bin", new)
    with pytest.raises(IntegrityError):
        await upload_file(api, local, "/swapped.bin", chunk_size=CHUNK, resume_url=session.url)
    with pytest.raises(NotFoundError):
        await api.metadata("/swapped.bin")
    # Started afresh, the new bytes go up whole.
    entry = await upload_file(api, local, "/swapped.bin", chunk_size=CHUNK)
    assert await read_remote(api, entry) == new


async def test_large_file_goes_up_in_checksummed_chunks_with_progress(
    api: DroplineClient, transport: FaultTransport, tmp_path: Path
) -> None:
    data = payload(10 * CHUNK + 123)
    local = write(tmp_path, "big.bin", data)
    progress: list[tuple[int, int]] = []
    limited: list[int] = []

    async def limiter(n: int) -> None:
        limited.append(n)

    entry = await upload_file(
        api,
        local,
        "/big.bin",
        chunk_size=CHUNK,
        on_progress=lambda d, t: progress.append((d, t)),
        limiter=limiter,
    )
    assert entry.sha256 == sha(data)
    assert transport.count("PATCH") == 11
    assert transport.body_bytes["PATCH"] == len(data)  # every byte sent exactly once
    assert progress[0] == (0, len(data)) and progress[-1] == (len(data), len(data))
    assert [d for d, _ in progress] == sorted(d for d, _ in progress)
    assert sum(limited) == len(data)
    assert await read_remote(api, entry) == data


async def test_given_hash_is_trusted_and_checked_by_the_server(
    api: DroplineClient, tmp_path: Path
) -> None:
    local = write(tmp_path, "f.txt", b"real content")
    with pytest.raises(IntegrityError):
        await upload_file(api, local, "/f.txt", sha256=sha(b"other content"))
    with pytest.raises(NotFoundError):
        await api.metadata("/f.txt")


async def test_connection_cut_mid_chunk_resumes_at_the_server_offset(
    api: DroplineClient, transport: FaultTransport, tmp_path: Path
) -> None:
    data = payload(8 * CHUNK)
    local = write(tmp_path, "cut.bin", data)
    # The third PATCH loses its connection after half its body.
    calls = {"n": 0}

    def third_patch(request: httpx.Request) -> bool:
        if PATCH(request):
            calls["n"] += 1
            return calls["n"] == 3
        return False

    transport.inject(third_patch, cut_request_after=CHUNK // 2)
    entry = await upload_file(api, local, "/cut.bin", chunk_size=CHUNK)
    assert entry.sha256 == sha(data)
    assert await read_remote(api, entry) == data
    assert transport.count("HEAD") >= 1  # it asked the server where to go on
    assert transport.body_bytes["PATCH"] <= len(data) + CHUNK  # at most one chunk again


async def test_lost_answer_to_a_chunk_is_recovered_by_asking_the_offset(
    api: DroplineClient, transport: FaultTransport, tmp_path: Path
) -> None:
    data = payload(4 * CHUNK)
    local = write(tmp_path, "lost.bin", data)
    transport.inject(PATCH, forward_first=True, exc=httpx.ReadTimeout)
    entry = await upload_file(api, local, "/lost.bin", chunk_size=CHUNK)
    assert entry.sha256 == sha(data)
    assert transport.body_bytes["PATCH"] == len(data)  # the applied chunk was not sent again


async def test_corrupted_chunk_is_sent_again(
    api: DroplineClient, transport: FaultTransport, tmp_path: Path
) -> None:
    data = payload(3 * CHUNK)
    local = write(tmp_path, "c.bin", data)
    transport.inject(PATCH, status=460, slug="checksum-mismatch")
    entry = await upload_file(api, local, "/c.bin", chunk_size=CHUNK)
    assert entry.sha256 == sha(data)
    assert transport.count("PATCH") == 4


async def test_restart_resumes_from_the_saved_url_without_resending(
    api: DroplineClient, transport: FaultTransport, tmp_path: Path
) -> None:
    data = payload(6 * CHUNK + 7)
    local = write(tmp_path, "resume.bin", data)
    # An earlier run got two chunks up, saved the URL, then died.
    session = await api.create_upload("/resume.bin", len(data), sha256=sha(data))
    await api.append(session.url, 0, data[: 2 * CHUNK])
    before = transport.body_bytes["PATCH"]
    sessions: list[str] = []
    progress: list[int] = []
    entry = await upload_file(
        api,
        local,
        "/resume.bin",
        chunk_size=CHUNK,
        resume_url=session.url,
        on_session=sessions.append,
        on_progress=lambda d, _t: progress.append(d),
    )
    assert entry.sha256 == sha(data)
    assert transport.body_bytes["PATCH"] - before == len(data) - 2 * CHUNK
    assert sessions == []  # the same upload went on
    assert progress[0] == 2 * CHUNK
    assert await read_remote(api, entry) == data


async def test_resume_after_the_last_chunk_landed_sends_nothing(
    api: DroplineClient, transport: FaultTransport, tmp_path: Path
) -> None:
    data = payload(2 * CHUNK)
    local = write(tmp_path, "fin.bin", data)
    session = await api.create_upload("/fin.bin", len(data), sha256=sha(data))
    await api.append(session.url, 0, data)  # finished, but the crash lost the answer
    patches = transport.count("PATCH")
    entry = await upload_file(api, local, "/fin.bin", resume_url=session.url)
    assert entry.sha256 == sha(data)
    assert transport.count("PATCH") == patches
    assert transport.count("POST", "/api/v1/uploads") == 1


async def test_resume_of_a_gone_upload_starts_a_new_one(
    api: DroplineClient, tmp_path: Path
) -> None:
    data = payload(2 * CHUNK)
    local = write(tmp_path, "gone.bin", data)
    old = await api.create_upload("/gone.bin", len(data))
    await api.terminate_upload(old.url)
    sessions: list[str] = []
    entry = await upload_file(
        api, local, "/gone.bin", chunk_size=CHUNK, resume_url=old.url, on_session=sessions.append
    )
    assert entry.sha256 == sha(data)
    assert len(sessions) == 1 and sessions[0] != old.url


async def test_resume_of_an_upload_for_other_content_starts_again(
    api: DroplineClient, tmp_path: Path
) -> None:
    data = payload(2 * CHUNK)
    local = write(tmp_path, "grown.bin", data)
    old = await api.create_upload("/grown.bin", CHUNK)  # the file was shorter back then
    sessions: list[str] = []
    entry = await upload_file(
        api, local, "/grown.bin", resume_url=old.url, on_session=sessions.append
    )
    assert entry.size == len(data)
    assert len(sessions) == 1
    with pytest.raises(NotFoundError):
        await api.upload_offset(old.url)  # the stale one was terminated


async def test_resume_of_an_upload_of_same_size_but_other_bytes_starts_again(
    api: DroplineClient, transport: FaultTransport, tmp_path: Path
) -> None:
    old_data, new_data = payload(2 * CHUNK, seed=1), payload(2 * CHUNK, seed=2)
    local = write(tmp_path, "edited.bin", new_data)
    old = await api.create_upload("/edited.bin", len(old_data), sha256=sha(old_data))
    await api.append(old.url, 0, old_data[:CHUNK])
    sessions: list[str] = []
    entry = await upload_file(
        api, local, "/edited.bin", chunk_size=CHUNK, resume_url=old.url, on_session=sessions.append
    )
    assert entry.sha256 == sha(new_data)
    assert len(sessions) == 1  # a new upload, not the old one's bytes with new ones after
    assert await read_remote(api, entry) == new_data


async def test_file_shrinking_during_upload_is_an_integrity_error(
    api: DroplineClient, tmp_path: Path
) -> None:
    data = payload(4 * CHUNK)
    local = write(tmp_path, "shrink.bin", data)
    calls = {"n": 0}

    async def truncate_after_first(n: int) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            with local.open("r+b") as fh:
                fh.truncate(CHUNK)

    with pytest.raises(IntegrityError, match="shorter"):
        await upload_file(
            api,
            local,
            "/shrink.bin",
            sha256=sha(data),
            chunk_size=CHUNK,
            limiter=truncate_after_first,
        )
    with pytest.raises(NotFoundError):
        await api.metadata("/shrink.bin")


# -- download -------------------------------------------------------------------------


@pytest.fixture
async def remote(api: DroplineClient) -> tuple[Entry, bytes]:
    data = payload(5 * CHUNK + 11, seed=7)
    session = await api.create_upload(
        "/dl.bin", len(data), sha256=sha(data), mtime=1_600_000_000.5, data=data
    )
    assert session.entry_id is not None
    return await api.get(session.entry_id), data


async def test_download_lands_verified_with_its_mtime(
    api: DroplineClient, remote: tuple[Entry, bytes], tmp_path: Path
) -> None:
    entry, data = remote
    dest = tmp_path / "out" / "dl.bin"
    progress: list[int] = []
    await download_file(api, entry, dest, on_progress=lambda d, _t: progress.append(d))
    assert dest.read_bytes() == data
    assert dest.stat().st_mtime == 1_600_000_000.5
    assert not default_partial_path(dest).exists()
    assert progress[-1] == len(data)


async def test_download_resumes_a_partial_file_byte_exact(
    api: DroplineClient, transport: FaultTransport, remote: tuple[Entry, bytes], tmp_path: Path
) -> None:
    entry, data = remote
    dest = tmp_path / "dl.bin"
    partial = tmp_path / "dl.partial"
    partial.write_bytes(data[: 3 * CHUNK])
    progress: list[int] = []
    await download_file(
        api, entry, dest, partial_path=partial, on_progress=lambda d, _t: progress.append(d)
    )
    assert dest.read_bytes() == data
    assert progress[0] == 3 * CHUNK  # it went on from the partial file, not from zero
    assert not partial.exists()


async def test_download_cut_midway_resumes_from_what_arrived(
    api: DroplineClient, transport: FaultTransport, remote: tuple[Entry, bytes], tmp_path: Path
) -> None:
    entry, data = remote
    dest = tmp_path / "dl.bin"
    transport.inject(CONTENT, cut_response_after=2 * CHUNK + 5)
    progress: list[int] = []
    await download_file(api, entry, dest, on_progress=lambda d, _t: progress.append(d))
    assert dest.read_bytes() == data
    assert content_gets(transport) == 2
    second_start = progress[progress.index(2 * CHUNK + 5) + 1]
    assert second_start == 2 * CHUNK + 5  # the second request started where the cut was


async def test_corrupt_partial_prefix_is_caught_and_fetched_whole(
    api: DroplineClient, remote: tuple[Entry, bytes], tmp_path: Path
) -> None:
    entry, data = remote
    dest = tmp_path / "dl.bin"
    bad = bytearray(data[:CHUNK])
    bad[100] ^= 0xFF
    default_partial_path(dest).write_bytes(bytes(bad))
    await download_file(api, entry, dest)
    assert dest.read_bytes() == data


async def test_hash_mismatch_keeps_nothing(
    api: DroplineClient, remote: tuple[Entry, bytes], tmp_path: Path
) -> None:
    entry, _data = remote
    dest = tmp_path / "dl.bin"
    dest.write_bytes(b"the user's previous version")
    lying = dataclasses.replace(entry, sha256="0" * 64)
    with pytest.raises(IntegrityError):
        await download_file(api, lying, dest)
    assert dest.read_bytes() == b"the user's previous version"
    assert not default_partial_path(dest).exists()


async def test_entry_changed_on_the_server_is_not_downloaded(
    api: DroplineClient, remote: tuple[Entry, bytes], tmp_path: Path
) -> None:
    entry, _data = remote
    newer = b"replaced on the server"
    await api.create_upload("/dl.bin", len(newer), sha256=sha(newer), if_rev=entry.rev, data=newer)
    dest = tmp_path / "dl.bin"
    with pytest.raises(PreconditionFailedError):
        await download_file(api, entry, dest)
    assert not dest.exists()


async def test_partial_longer_than_the_file_is_discarded(
    api: DroplineClient, remote: tuple[Entry, bytes], tmp_path: Path
) -> None:
    entry, data = remote
    dest = tmp_path / "dl.bin"
    default_partial_path(dest).write_bytes(data + b"extra bytes from another version")
    await download_file(api, entry, dest)
    assert dest.read_bytes() == data


async def test_complete_partial_is_verified_without_downloading(
    api: DroplineClient, transport: FaultTransport, remote: tuple[Entry, bytes], tmp_path: Path
) -> None:
    entry, data = remote
    dest = tmp_path / "dl.bin"
    default_partial_path(dest).write_bytes(data)
    await download_file(api, entry, dest)
    assert dest.read_bytes() == data
    assert content_gets(transport) == 0


async def test_empty_file_and_custom_commit(api: DroplineClient, tmp_path: Path) -> None:
    session = await api.create_upload("/empty.txt", 0, sha256=sha(b""))
    entry = await api.get(str(session.entry_id))
    committed: list[tuple[Path, Path]] = []

    def commit(partial: Path, dest: Path) -> None:
        committed.append((partial, dest))
        partial.rename(dest)

    dest = tmp_path / "empty.txt"
    await download_file(api, entry, dest, commit=commit)
    assert dest.read_bytes() == b""
    assert committed == [(default_partial_path(dest), dest)]
