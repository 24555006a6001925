"""office.two-editors: one document edited on two workstations at once (two agents on
the same remote folder, the second edit a seeded 0-300 ms after the first, each saved in
place or through a temporary file). Neither edit may be lost: one stays the document,
the other becomes a conflict copy beside it, on both agents and on the server alike.
"""

from __future__ import annotations

import hashlib
import os
import random
import time
from pathlib import Path

from tests.faults.harness import Outcome
from tests.faults.scenarios.common import final_checks, retire, wait_converged
from tests.faults.scenarios.workstations import Desks, OnDesks, wait_agreed
from tests.faults.trees import MiB, Shape, Tree, content, plan, write

CONVERGE_TIMEOUT = float(os.environ.get("FAULTS_CONVERGE_TIMEOUT", "180"))
DOCUMENT = "/Minutes.docx"


def edit(target: Path, data: bytes, through_temp: bool) -> None:
    """Save ``data`` to ``target``: written over in place, or to a temporary file that is
    then renamed over it (as most editors do)."""
    if not through_temp:
        with target.open("r+b") as fh:
            fh.write(data)
            fh.truncate()
        return
    temp = target.with_name(f".{target.name}.~edit")
    temp.write_bytes(data)
    os.replace(temp, target)


def conflict_family(tree: Tree) -> dict[str, str]:
    """The document and its conflict copies (``Minutes (conflicted copy …).docx``)."""
    stem, ext = DOCUMENT.rsplit(".", 1)
    return {
        p: s
        for p, s in tree.files.items()
        if p == DOCUMENT or (p.startswith(stem + " (conflicted copy ") and p.endswith("." + ext))
    }


class TwoEditors(OnDesks):
    name = "office.two-editors"
    trials = 10
    ci_trials = 1
    desk_count = 2

    def __init__(self, ci: bool = False) -> None:
        self.shape = Shape(small=20 if ci else 40, large=0, large_size=0, folders=3)

    async def trial(self, d: Desks, rng: random.Random, seed: int) -> Outcome:
        world, agents = d.world, d.agents
        top = f"/e{seed}"
        roots = [agent.dir / f"e{seed}" for agent in agents]
        outcome = Outcome()
        findings = outcome.findings
        since_wall = time.time()
        files = plan(rng, self.shape)
        size = rng.choice([rng.randrange(20_000, 400_000), int(rng.uniform(1.5, 3) * MiB)])
        files[DOCUMENT] = content(rng, DOCUMENT, size)
        tree = write(roots[0], files)
        async with world.sdk() as sdk:
            await sdk.create_folder(top)
        for agent, root in zip(agents, roots, strict=True):
            agent.configure([(root, top)])
        await wait_converged(world, agents, top, roots, tree, CONVERGE_TIMEOUT)

        first = rng.randrange(2)
        order = [first, 1 - first]
        edits = {i: content(rng, f"{DOCUMENT} by {agents[i].name}", size + i + 1) for i in order}
        gap = rng.uniform(0.0, 0.3)
        for number, i in enumerate(order):
            if number:
                time.sleep(gap)  # blocking on purpose: nothing else may run between them
            edit(roots[i] / DOCUMENT.lstrip("/"), edits[i], rng.random() < 0.5)
        edited = time.monotonic()
        outcome.faults = 1
        outcome.notes["gap_ms"] = round(gap * 1000)
        _seconds, agreed = await wait_agreed(world, agents, top, roots, CONVERGE_TIMEOUT)
        outcome.converge_s = time.monotonic() - edited

        family = conflict_family(agreed)
        wanted = sorted(hashlib.sha256(data).hexdigest() for data in edits.values())
        if sorted(family.values()) != wanted or len(family) != 2:
            findings.fail(
                f"{DOCUMENT}: both edits should be kept (the file and one conflict copy), "
                f"found {sorted(family)}",
                lost=max(0, 2 - len(set(family.values()) & set(wanted))),
            )
        expected = Tree()
        for path, sha in tree.files.items():
            if path != DOCUMENT:
                expected.files[path], expected.sizes[path] = sha, tree.sizes[path]
        for path, sha in family.items():
            expected.files[path], expected.sizes[path] = sha, agreed.sizes[path]
        await final_checks(findings, world, agents, top, roots, expected, since_wall, rng)
        if not findings.problems:
            await retire(agents, roots)
        return outcome


def scenarios(ci: bool = False) -> list[TwoEditors]:
    return [TwoEditors(ci)]
