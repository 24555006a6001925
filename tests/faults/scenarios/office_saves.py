"""office.save-sequence: Word and Excel save a document the way they do (never in place)
several times while the agent is uploading an earlier save of it.

- Word: the new content goes to ``~WRL0001.tmp``, the original is renamed to a backup
  name, the temporary file is renamed into place, the backup is deleted.
- Excel: the new content goes to a random eight-hex-digit name without an extension,
  the original is renamed to another such name, the temporary file takes the original's
  name, the renamed original is deleted.

The documents are a few MiB and the proxy runs at 2 MiB/s, so an upload is in flight
when the next save comes (at a seeded moment after the upload started). In the end the
server holds exactly each document's last save, no temporary or backup name, no
conflict copy, and every revision it published was one whole save.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from pathlib import Path

from tests.faults.harness import Outcome
from tests.faults.invariants import Findings
from tests.faults.proxy import FaultProxy
from tests.faults.scenarios.common import UPLOADS, final_checks, retire, wait_converged
from tests.faults.scenarios.workstations import Desks, OnDesks
from tests.faults.trees import MiB, Shape, content, plan, write
from tests.faults.world import World

CONVERGE_TIMEOUT = float(os.environ.get("FAULTS_CONVERGE_TIMEOUT", "180"))
RATE = 2 * MiB  # bytes per second each way while the saves come: uploads stay in flight
DOCUMENTS = {"/Quarterly report.docx": "word", "/Budget 2027.xlsx": "excel"}


def _hex_name(rng: random.Random) -> str:
    return f"{rng.getrandbits(32):08X}"


async def _pause(rng: random.Random) -> None:
    """The program's own pauses between the steps of a save (a few milliseconds)."""
    await asyncio.sleep(rng.uniform(0.0, 0.03))


async def word_save(target: Path, data: bytes, rng: random.Random) -> None:
    temp = target.with_name("~WRL0001.tmp")
    backup = target.with_name(
        rng.choice([f"~WRD{rng.randrange(10000):04d}.tmp", f"Backup of {target.stem}.wbk"])
    )
    temp.write_bytes(data)
    await _pause(rng)
    os.rename(target, backup)
    await _pause(rng)
    os.rename(temp, target)
    await _pause(rng)
    os.unlink(backup)


async def excel_save(target: Path, data: bytes, rng: random.Random) -> None:
    temp = target.with_name(_hex_name(rng))
    old = target.with_name(_hex_name(rng))
    temp.write_bytes(data)
    await _pause(rng)
    os.rename(target, old)
    await _pause(rng)
    os.rename(temp, target)
    await _pause(rng)
    os.unlink(old)


def _uploading(proxy: FaultProxy, since: float) -> bool:
    """An upload request that began since ``since`` is still on its way or unanswered."""
    return any(e.status == 0 for e in proxy.seen("", UPLOADS, since))


async def _upload_started(proxy: FaultProxy, since: float, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proxy.seen("POST", UPLOADS, since):
            return True
        await asyncio.sleep(0.02)
    return False


class SaveSequence(OnDesks):
    name = "office.save-sequence"
    trials = 10
    ci_trials = 1

    def __init__(self, ci: bool = False) -> None:
        self.shape = Shape(small=20 if ci else 40, large=0, large_size=0, folders=3)

    async def trial(self, d: Desks, rng: random.Random, seed: int) -> Outcome:
        world, agent = d.world, d.agents[0]
        proxy = world.through_proxy()
        proxy.clear()
        top, root = f"/o{seed}", agent.dir / f"o{seed}"
        outcome = Outcome()
        findings = outcome.findings
        since_wall = time.time()
        files = plan(rng, self.shape)
        sizes = {name: int(rng.uniform(3, 6) * MiB) for name in DOCUMENTS}
        for name, size in sizes.items():
            files[name] = content(rng, name, size)
        tree = write(root, files)
        versions = {name: {tree.files[name]} for name in DOCUMENTS}
        async with world.sdk() as sdk:
            await sdk.create_folder(top)
        agent.configure([(root, top)])
        await wait_converged(world, [agent], top, [root], tree, CONVERGE_TIMEOUT)

        since, saves_wall = time.monotonic(), time.time()
        proxy.rate = RATE
        saves = [name for name in DOCUMENTS for _ in range(rng.randint(3, 5))]
        rng.shuffle(saves)
        saved = since
        for number, name in enumerate(saves):
            if number:  # a seeded moment after the previous save's upload started
                await _upload_started(proxy, saved)
                await asyncio.sleep(rng.uniform(0.0, 1.2))
            outcome.faults += _uploading(proxy, saved)
            data = content(rng, f"{name} save {number}", sizes[name] + rng.randrange(64 * 1024))
            save = word_save if DOCUMENTS[name] == "word" else excel_save
            await save(root / name.lstrip("/"), data, rng)
            saved = time.monotonic()
            tree.add(name, data)
            versions[name].add(tree.files[name])
        outcome.notes["saves"] = float(len(saves))
        last_save = time.monotonic()
        proxy.clear()
        outcome.converge_s = await wait_converged(
            world, [agent], top, [root], tree, CONVERGE_TIMEOUT
        )
        await _published_whole(findings, world, top, versions)
        published = await _published_bytes(world, top, saves_wall)
        sent = proxy.body_bytes("PATCH", UPLOADS + "/", since)
        sent += sum(e.body for e in proxy.seen("POST", UPLOADS, since) if e.path == UPLOADS)
        outcome.resent = max(0, sent - published)
        outcome.notes["seconds_after_last_save"] = round(time.monotonic() - last_save, 1)
        await final_checks(findings, world, [agent], top, [root], tree, since_wall, rng)
        if not findings.problems:
            await retire([agent], [root])
        return outcome


async def _published_whole(
    findings: Findings, world: World, top: str, versions: dict[str, set[str]]
) -> None:
    """Every revision the server published of a document is one of its saves."""
    async with world.sdk() as sdk:
        for name, whole in versions.items():
            entry = await sdk.metadata(top + name)
            for revision in await sdk.revisions(entry.id):
                if revision.sha256 not in whole:
                    findings.fail(f"server: a revision of {name} is no save of it", lost=1)


async def _published_bytes(world: World, top: str, since_wall: float) -> int:
    """The sizes of the documents' revisions published since the saves began: what had
    to go up. Anything sent beyond them went up again (an upload a later save overtook,
    or a revision of an entry a save sequence's rename left behind)."""
    total = 0
    async with world.sdk() as sdk:
        for name in DOCUMENTS:
            entry = await sdk.metadata(top + name)
            total += sum(
                r.size for r in await sdk.revisions(entry.id) if r.created_at >= since_wall
            )
    return total


def scenarios(ci: bool = False) -> list[SaveSequence]:
    return [SaveSequence(ci)]
