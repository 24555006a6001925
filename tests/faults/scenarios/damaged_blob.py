"""damaged-blob: one bit flipped in a blob on the server's disk (a seeded file, byte and
bit), the blob of a new version the agent has yet to download.

While it is damaged: a download of it through the SDK gets an error (``content-damaged``
before the first byte, or a stream cut at the damaged chunk), never the wrong bytes, and
a ``download_file`` over a good copy leaves that copy alone; the server writes a
``blob.damaged`` audit row; the agent reports an issue on the file, keeps its good (older)
copy and takes the other new versions as usual. Then the blob is restored (as from a
backup) and the agent must fetch the new version by itself.
"""

from __future__ import annotations

import hashlib
import os
import random
import sqlite3
import time
from pathlib import Path

from dropline.sdk.client import DroplineClient
from dropline.sdk.errors import DroplineError
from dropline.sdk.resumable import download_file
from tests.faults.harness import Outcome
from tests.faults.invariants import Findings
from tests.faults.scenarios.common import (
    final_checks,
    fired,
    put_tree,
    retire,
    wait_converged,
)
from tests.faults.scenarios.workstations import Desks, OnDesks, issues
from tests.faults.trees import MiB, Shape, content, plan, sha_of, write
from tests.faults.world import World

CONVERGE_TIMEOUT = float(os.environ.get("FAULTS_CONVERGE_TIMEOUT", "180"))


def blob_of(world: World, entry_id: str) -> Path:
    """The file on the server's disk that holds an entry's current content."""
    conn = sqlite3.connect(f"file:{world.data / 'dropline.db'}?mode=ro", uri=True, timeout=30)
    try:
        row = conn.execute("SELECT blob_id FROM entries WHERE id = ?", (entry_id,)).fetchone()
    finally:
        conn.close()
    (path,) = (world.data / "blobs").glob(f"*/{row[0]}")
    return path


def flip(blob: Path, offset: int, bit: int) -> None:
    with blob.open("r+b") as fh:
        fh.seek(offset)
        byte = fh.read(1)[0]
        fh.seek(offset)
        fh.write(bytes([byte ^ (1 << bit)]))


def audit_rows(world: World, blob_id: str) -> int:
    conn = sqlite3.connect(f"file:{world.data / 'dropline.db'}?mode=ro", uri=True, timeout=30)
    try:
        (count,) = conn.execute(
            "SELECT count(*) FROM audit_events WHERE action = 'blob.damaged' AND resource = ?",
            (blob_id,),
        ).fetchone()
    finally:
        conn.close()
    return int(count)


async def sdk_refuses(
    findings: Findings, sdk: DroplineClient, top: str, path: str, good: bytes, tmp: Path
) -> None:
    """A stream of the damaged file and a download over a good copy both end in an error,
    never in wrong bytes, and the good copy is left alone."""
    entry = await sdk.metadata(top + path)
    digest, got = hashlib.sha256(), 0
    try:
        async with sdk.open_content(entry.id) as stream:
            async for block in stream.chunks():
                digest.update(block)
                got += len(block)
        findings.fail(f"SDK: the damaged {path} streamed whole ({got} bytes), no error")
    except DroplineError:
        pass
    if got == entry.size and digest.hexdigest() != entry.sha256:
        findings.fail(f"SDK: the damaged {path} arrived whole with the wrong bytes", lost=1)
    copy = tmp / "good-copy.bin"
    copy.write_bytes(good)
    try:
        await download_file(sdk, entry, copy, partial_path=tmp / "good-copy.partial")
        findings.fail(f"SDK: download_file of the damaged {path} succeeded")
    except DroplineError:
        pass
    if copy.read_bytes() != good:
        findings.fail(f"SDK: download_file of the damaged {path} changed the good copy", lost=1)
    findings.files_checked += 2
    copy.unlink()
    (tmp / "good-copy.partial").unlink(missing_ok=True)


class DamagedBlob(OnDesks):
    name = "damaged-blob"
    trials = 10
    ci_trials = 1

    def __init__(self, ci: bool = False) -> None:
        self.shape = Shape(small=20 if ci else 40, large=1, large_size=3 * MiB, folders=3)

    async def trial(self, d: Desks, rng: random.Random, seed: int) -> Outcome:
        world, agent = d.world, d.agents[0]
        proxy = world.through_proxy()
        proxy.clear()
        top, root = f"/x{seed}", agent.dir / f"x{seed}"
        outcome = Outcome()
        findings = outcome.findings
        since_wall = time.time()
        tree = write(root, plan(rng, self.shape))
        async with world.sdk() as sdk:
            await sdk.create_folder(top)
        agent.configure([(root, top)])
        await wait_converged(world, [agent], top, [root], tree, CONVERGE_TIMEOUT)

        # New versions arrive on the server while the agent is stopped; one is damaged.
        agent.stop()
        paths = sorted(tree.files)
        large = [p for p in paths if tree.sizes[p] > MiB]
        target = large[0] if rng.random() < 0.5 else rng.choice(paths)
        others = rng.sample([p for p in paths if p != target], 3)
        good = (root / target.lstrip("/")).read_bytes()
        newer = {p: content(rng, f"{p} v2", tree.sizes[p] + 100) for p in [target, *others]}
        since = time.monotonic()
        async with world.sdk() as sdk:
            await put_tree(sdk, top, newer, agent.dir)
            entry = await sdk.metadata(top + target)
            blob = blob_of(world, entry.id)
            offset, bit = rng.randrange(blob.stat().st_size), rng.randrange(8)
            flip(blob, offset, bit)
            outcome.faults = 1
            outcome.notes["damaged_at_byte"] = float(offset)
            await sdk_refuses(findings, sdk, top, target, good, agent.dir)
        for path, data in newer.items():
            tree.add(path, data)
        if audit_rows(world, blob.name) < 1:
            findings.fail(f"server: no blob.damaged audit row for {blob.name}")

        agent.start()

        def reported() -> bool:
            return any(i["path"].lstrip("/") == target.lstrip("/") for i in issues(agent))

        if not await fired(reported, 90.0):
            findings.fail(f"agent: no issue on {target} while its blob is damaged")
        others_in = await fired(
            lambda: all(_local_sha(root, p) == tree.files[p] for p in others), 60.0
        )
        if not others_in:
            findings.fail("agent: the other new versions did not arrive beside the damaged one")
        if _local_sha(root, target) != hashlib.sha256(good).hexdigest():
            findings.fail(f"agent: the good copy of {target} was replaced or removed", lost=1)
        findings.files_checked += 1 + len(others)

        flip(blob, offset, bit)  # restored, as from a backup
        restored = time.monotonic()
        await wait_converged(world, [agent], top, [root], tree, CONVERGE_TIMEOUT)
        outcome.converge_s = time.monotonic() - restored
        fetched = sum(  # file bytes only: the content-damaged answers carry none
            e.answer
            for e in proxy.seen("GET", "/api/v1/files/", since)
            if "/content" in e.path and e.status in (200, 206)
        )
        outcome.resent = max(0, fetched - sum(tree.sizes[p] for p in newer))
        await final_checks(findings, world, [agent], top, [root], tree, since_wall, rng)
        if any(i["path"].lstrip("/") == target.lstrip("/") for i in issues(agent)):
            findings.fail(f"agent: the issue on {target} stayed after it downloaded")
        if not findings.problems:
            await retire([agent], [root])
        return outcome


def _local_sha(root: Path, path: str) -> str | None:
    target = root / path.lstrip("/")
    return sha_of(target) if target.exists() else None


def scenarios(ci: bool = False) -> list[DamagedBlob]:
    return [DamagedBlob(ci)]
