"""Whole folders at once:

- ``office.folder-rename``: a folder of 1,000 small files renamed while its first upload
  runs (at a seeded batch request, a seeded way into its body). Every file must end on
  the server under the new name with its SHA-256 and nothing under the old one; a file
  that went up twice costs bytes, never a file.
- ``office.mass-delete``: 80% of a folder's files deleted at once, here or on the server
  (seeded). The agent's guard must pause the folder and raise a ``mass-delete`` issue
  with nothing deleted on the other side; then the trial answers as the tray would:
  retry (delete them there too) or dismiss (bring them back), and checks that outcome.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from pathlib import Path
from typing import Any

from tests.faults.harness import Outcome
from tests.faults.invariants import Findings, remote_files
from tests.faults.proxy import Rule
from tests.faults.scenarios.common import UPLOADS, final_checks, fired, retire, wait_converged
from tests.faults.scenarios.workstations import Desks, OnDesks, answer_issue, issues
from tests.faults.trees import Shape, Tree, plan, write
from tests.faults.world import Agent, World

CONVERGE_TIMEOUT = float(os.environ.get("FAULTS_CONVERGE_TIMEOUT", "180"))
OLD, NEW = "/Projects", "/Projects 2027"


def renamed(tree: Tree, old: str, new: str) -> Tree:
    out = Tree()
    for path, sha in tree.files.items():
        moved = new + path[len(old) :] if path.startswith(old + "/") else path
        out.files[moved], out.sizes[moved] = sha, tree.sizes[path]
    return out


class FolderRename(OnDesks):
    name = "office.folder-rename"
    trials = 10
    ci_trials = 1

    def __init__(self, ci: bool = False) -> None:
        self.inside = Shape(small=1000, large=0, large_size=0, folders=6)
        self.outside = Shape(small=10, large=0, large_size=0, folders=1)

    async def trial(self, d: Desks, rng: random.Random, seed: int) -> Outcome:
        world, agent = d.world, d.agents[0]
        proxy = world.through_proxy()
        proxy.clear()
        top, root = f"/r{seed}", agent.dir / f"r{seed}"
        outcome = Outcome()
        since_wall, since = time.time(), time.monotonic()
        files = {OLD + p: data for p, data in plan(rng, self.inside).items()}
        files.update({"/outside" + p: data for p, data in plan(rng, self.outside).items()})
        tree = write(root, files)
        async with world.sdk() as sdk:
            await sdk.create_folder(top)

        def rename() -> None:
            os.rename(root / OLD.lstrip("/"), root / NEW.lstrip("/"))

        nth, offset = rng.randint(1, 4), rng.randrange(256 * 1024)
        rule = proxy.add(Rule("POST", UPLOADS + "/batch", nth, "body", offset, "call", 0, rename))
        agent.configure([(root, top)])
        if await fired(lambda: rule.fired_at is not None, 120.0):
            outcome.faults = 1
        else:  # fewer batches than drawn: rename once the upload is done
            proxy.clear()
            rename()
        moved_at = time.monotonic()
        tree = renamed(tree, OLD, NEW)
        proxy.clear()
        await wait_converged(world, [agent], top, [root], tree, CONVERGE_TIMEOUT)
        outcome.converge_s = time.monotonic() - moved_at
        sent = proxy.body_bytes("POST", UPLOADS, since) + proxy.body_bytes("PATCH", UPLOADS, since)
        outcome.resent = max(0, sent - tree.total_bytes - 2 * 1024 * len(tree.files))
        outcome.notes["files_renamed"] = float(sum(p.startswith(NEW + "/") for p in tree.files))
        await final_checks(outcome.findings, world, [agent], top, [root], tree, since_wall, rng)
        if not outcome.findings.problems:
            await retire([agent], [root])
        return outcome


class MassDelete(OnDesks):
    name = "office.mass-delete"
    trials = 10
    ci_trials = 1

    def __init__(self, ci: bool = False) -> None:
        self.shape = Shape(small=60, large=0, large_size=0, folders=4)

    async def trial(self, d: Desks, rng: random.Random, seed: int) -> Outcome:
        world, agent = d.world, d.agents[0]
        top, root = f"/m{seed}", agent.dir / f"m{seed}"
        outcome = Outcome()
        findings = outcome.findings
        since_wall = time.time()
        tree = write(root, plan(rng, self.shape))
        async with world.sdk() as sdk:
            await sdk.create_folder(top)
        agent.configure([(root, top)])
        await wait_converged(world, [agent], top, [root], tree, CONVERGE_TIMEOUT)

        gone = _most_of(tree, rng, 0.8)
        here = rng.random() < 0.5  # deleted in the folder, or on the server by someone else
        if here:
            for path in gone:
                (root / path.lstrip("/")).unlink()
        else:
            async with world.sdk() as sdk:
                for path in gone:
                    await sdk.delete((await sdk.metadata(top + path)).id)
        outcome.faults = 1
        guard = await _guard_issue(agent, 60.0)
        if guard is None:
            findings.fail(f"no mass-delete issue after {len(gone)} of {len(tree.files)} deletes")
            return outcome
        await asyncio.sleep(2.5)  # long enough for deletes the guard let through to show
        await _nothing_deleted_across(findings, world, agent, top, root, tree, gone, here)

        confirm = rng.random() < 0.5
        answered = time.monotonic()
        answer_issue(agent, int(guard["id"]), confirm)
        outcome.notes["confirmed"] = float(confirm)
        expected = Tree()
        for path, sha in tree.files.items():
            if not confirm or path not in gone:
                expected.files[path], expected.sizes[path] = sha, tree.sizes[path]
        await wait_converged(world, [agent], top, [root], expected, CONVERGE_TIMEOUT)
        outcome.converge_s = time.monotonic() - answered
        if any(i["kind"] == "mass-delete" for i in issues(agent)):
            findings.fail("the mass-delete issue stayed after it was answered")
        await final_checks(findings, world, [agent], top, [root], expected, since_wall, rng)
        if not findings.problems:
            await retire([agent], [root])
        return outcome


def _most_of(tree: Tree, rng: random.Random, share: float) -> list[str]:
    """``share`` of the tree's files, drawn so that each folder keeps one (an emptied
    folder stays on the side that did not delete it, which is not what is checked here)."""
    keep: dict[str, str] = {}
    for path in rng.sample(sorted(tree.files), k=len(tree.files)):
        keep.setdefault(path.rsplit("/", 1)[0], path)
    rest = sorted(set(tree.files) - set(keep.values()))
    return rng.sample(rest, k=min(len(rest), int(share * len(tree.files))))


async def _guard_issue(agent: Agent, timeout: float) -> dict[str, Any] | None:
    found: list[dict[str, Any]] = []

    def raised() -> bool:
        found[:] = [i for i in issues(agent) if i["kind"] == "mass-delete"]
        return bool(found)

    return found[0] if await fired(raised, timeout) else None


async def _nothing_deleted_across(
    findings: Findings,
    world: World,
    agent: Agent,
    top: str,
    root: Path,
    tree: Tree,
    gone: list[str],
    here: bool,
) -> None:
    """While the guard holds: the folder is paused and the side that did not delete still
    has every file."""
    states = [f["state"] for f in agent.status()["folders"]]
    if states != ["paused"]:
        findings.fail(f"the folder is {states}, not paused, while the guard holds")
    if here:
        async with world.sdk() as sdk:
            there = {p: s for p, s in (await remote_files(sdk, top)).items() if s is not None}
        lost = [p for p in gone if p not in there]
        side = "server"
    else:
        lost = [p for p in gone if not (root / p.lstrip("/")).exists()]
        side = "folder"
    if lost:
        findings.fail(f"{side}: {len(lost)} files deleted before the guard was answered")
    findings.files_checked += len(tree.files)


def scenarios(ci: bool = False) -> list[FolderRename | MassDelete]:
    return [FolderRename(ci), MassDelete(ci)]
