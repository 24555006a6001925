"""What office staff really do to a synced folder, with a real engine and server: Word's
save sequence over and over while the last save is still going up, a big file copied in
slowly, a folder of 1,000 files renamed while it uploads, one file saved on two
workstations at once, and most of a folder deleted bit by bit."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from contextlib import AbstractAsyncContextManager
from dataclasses import replace
from pathlib import Path

import pytest

from dropline.sdk.client import DroplineClient
from dropline.sync.conflicts import is_conflict_copy
from dropline.sync.engine import Engine
from dropline.sync.types import FolderSpec, State
from tests.support.live import LiveServer
from tests.sync.engine_helpers import (
    FAST,
    StartEngine,
    eventually,
    local_tree,
    remote_entry,
    remote_tree,
    running_engine,
    settled,
    sha,
)

pytestmark = pytest.mark.anyio

MiB = 1024 * 1024


def word_save(folder: Path, name: str, data: bytes, n: int) -> None:
    """Word's save: write a temporary file, rename the document away, rename the temporary
    file into its place, delete the renamed original."""
    temp = folder / f"~WRL{1000 + n:04d}.tmp"
    backup = folder / f"~WRL{n:04d}.tmp"
    with temp.open("wb") as fh:
        fh.write(data)
    os.rename(folder / name, backup)
    os.rename(temp, folder / name)
    backup.unlink()


async def test_word_saving_during_an_upload_publishes_only_whole_saved_versions(
    root: Path, sdk: DroplineClient, start_engine: StartEngine
) -> None:
    # Each version a different size, so a half-sent one could not pass for another.
    versions = [os.urandom(3 * MiB + n * 100_000) for n in range(5)]
    saved = {sha(v): len(v) for v in versions}
    slow = replace(FAST, upload_limit_bps=4 * MiB, chunk_size=MiB)
    (root / "~$port.docx").write_bytes(b"owner file Word keeps while the document is open")
    (root / "report.docx").write_bytes(versions[0])
    async with start_engine(settings=slow) as engine:
        for n, data in enumerate(versions[1:], start=1):
            sent = engine.counters().bytes_uploaded
            # The previous save is on its way up...
            await eventually(lambda s=sent: engine.counters().bytes_uploaded >= s + MiB)
            word_save(root, "report.docx", data, n)  # ...when the next one lands
        engine.set_bandwidth(None, None)
        await settled(engine, timeout=60)

        entry = await remote_entry(sdk, "/report.docx")
        assert entry is not None and entry.sha256 == sha(versions[-1])
        assert await remote_tree(sdk) == {"/report.docx": sha(versions[-1])}  # no temp file
        revisions = await sdk.revisions(entry.id)
        assert revisions[0].current and revisions[0].sha256 == sha(versions[-1])
        for revision in revisions:  # every one a version someone saved, whole
            assert saved.get(revision.sha256) == revision.size, revision
        assert engine.issues() == []


async def test_a_big_file_copied_in_slowly_is_published_once_whole_after_the_copy(
    root: Path, sdk: DroplineClient, start_engine: StartEngine
) -> None:
    await copied_in_slowly(root, sdk, start_engine, size=64 * MiB, seconds=6.0)


async def copied_in_slowly(
    root: Path, sdk: DroplineClient, start_engine: StartEngine, *, size: int, seconds: float
) -> None:
    """Write ``size`` bytes into the folder over ``seconds``, the way a copy from a slow
    share does (one open file, written a block at a time), checking the server all along."""
    block = os.urandom(MiB)
    blocks = size // MiB
    digest = hashlib.sha256()
    settings = replace(FAST, stable_seconds=1.0)
    async with start_engine(settings=settings) as engine:
        await settled(engine)
        started = time.monotonic()
        with (root / "site survey.mp4").open("wb") as fh:
            for i in range(blocks):
                data = i.to_bytes(8, "big") + block[8:]  # each block its own
                fh.write(data)
                digest.update(data)
                due = started + seconds * (i + 1) / blocks
                if i % 8 == 7:
                    # Nothing of it is on the server while it is being written.
                    assert await remote_entry(sdk, "/site survey.mp4") is None
                await asyncio.sleep(max(0.0, due - time.monotonic()))
            assert await remote_entry(sdk, "/site survey.mp4") is None
            assert engine.counters().bytes_uploaded == 0
        await eventually(lambda: engine.counters().files_uploaded == 1, timeout=60 + seconds)
        await settled(engine, timeout=60)
        entry = await remote_entry(sdk, "/site survey.mp4")
        assert entry is not None and entry.size == size
        assert entry.sha256 == digest.hexdigest()
        [revision] = await sdk.revisions(entry.id)  # published once, whole
        assert revision.sha256 == digest.hexdigest()


async def test_a_folder_of_a_thousand_files_renamed_while_it_uploads_arrives_renamed(
    root: Path, sdk: DroplineClient, start_engine: StartEngine
) -> None:
    # Slow enough that the rename lands while files are still going up.
    slow = replace(FAST, upload_limit_bps=2 * MiB, batch_files=50)
    expected = {f"scan-{i:04d}.pdf": os.urandom(4096) for i in range(1000)}
    async with start_engine(settings=slow) as engine:
        await settled(engine)
        staging = root.parent / "staging"
        (staging / "Scans 2026").mkdir(parents=True)
        for name, data in expected.items():
            (staging / "Scans 2026" / name).write_bytes(data)
        os.rename(staging / "Scans 2026", root / "Scans 2026")  # dropped in at once
        await eventually(lambda: engine.counters().files_uploaded >= 100)
        assert engine.counters().files_uploaded < 1000
        os.rename(root / "Scans 2026", root / "Survey scans 2026")
        engine.set_bandwidth(None, None)
        await settled(engine, timeout=60)

        server = await remote_tree(sdk)
        want = {"/Survey scans 2026": None} | {
            f"/Survey scans 2026/{name}": sha(data) for name, data in expected.items()
        }
        assert server == want  # nothing under the old name
        assert local_tree(root) == want
        assert engine.issues() == []


async def test_one_file_saved_on_two_workstations_at_once_keeps_both_versions(
    tmp_path: Path, live_server: LiveServer, api_key: str, sdk: DroplineClient
) -> None:
    left, right = tmp_path / "ws-a" / "Dropline", tmp_path / "ws-b" / "Dropline"
    left.mkdir(parents=True)
    right.mkdir(parents=True)
    (left / "rota.xlsx").write_bytes(b"the rota as Monday left it")

    def workstation(folder: Path, host: str) -> AbstractAsyncContextManager[Engine]:
        settings = replace(FAST, hostname=host)
        return running_engine(
            folder.parent / "home", live_server.url, api_key, [FolderSpec(folder)], settings
        )

    async with workstation(left, "ws-a") as a, workstation(right, "ws-b") as b:
        await settled(a)
        await eventually(lambda: (right / "rota.xlsx").exists())
        await settled(b)
        # Both save at the same moment, each over the version they both had.
        (left / "rota.xlsx").write_bytes(b"the rota with Anna's change")
        (right / "rota.xlsx").write_bytes(b"the rota with Ben's change")

        async def agreed() -> bool:
            server = await remote_tree(sdk)
            return len(server) == 2 and local_tree(left) == server == local_tree(right)

        await eventually(agreed, timeout=60)
        await settled(a)
        await settled(b)

    server = await remote_tree(sdk)
    [copy] = [p for p in server if is_conflict_copy(p)]
    contents = {server["/rota.xlsx"], server[copy]}
    assert contents == {sha(b"the rota with Anna's change"), sha(b"the rota with Ben's change")}
    # The copy is named for the workstation whose save lost the race, and holds its version.
    loser = "ws-a" if server[copy] == sha(b"the rota with Anna's change") else "ws-b"
    assert copy.startswith(f"/rota (conflicted copy {loser} "), copy
    assert local_tree(left) == server == local_tree(right)


async def test_most_of_a_folder_deleted_bit_by_bit_is_held_and_asks_first(
    root: Path, sdk: DroplineClient, start_engine: StartEngine
) -> None:
    names = [f"invoice-{i:03d}.pdf" for i in range(100)]
    for name in names:
        (root / name).write_bytes(f"%PDF {name}".encode())
    async with start_engine() as engine:
        await settled(engine)
        assert len(await remote_tree(sdk)) == 100
        # Deleting 80 of them the way a file manager does: a few at a time, for 3 s.
        doomed = names[:80]
        for i in range(0, 80, 4):
            for name in doomed[i : i + 4]:
                (root / name).unlink()
            await asyncio.sleep(3.0 / 20)
        await eventually(lambda: engine.status().folders[0].state is State.PAUSED)
        [issue] = engine.issues()
        assert issue.kind == "mass-delete" and "80 of 100" in issue.message, issue.message
        await asyncio.sleep(1.0)  # and it holds
        assert len(await remote_tree(sdk)) == 100  # nothing deleted on the server
        assert await sdk.trash() == []

        engine.retry_issue(issue.id)  # yes, they are meant to go
        await settled(engine)
        server = await remote_tree(sdk)
        assert sorted(server) == [f"/{n}" for n in names[80:]]
        assert len(await sdk.trash()) == 80  # and even then, nothing is lost
