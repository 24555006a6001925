"""kill -9 of the agent at a seeded moment: during the initial sync of a mixed tree,
during downloads, during a rename storm, and while the server publishes an upload;
then the agent starts again and everything must converge with nothing lost.

One server and one agent serve all the trials of a scenario; each trial syncs a folder
of its own (``/t<seed>``), handed to the running agent through its config file.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from pathlib import Path

from tests.faults.harness import Outcome
from tests.faults.invariants import local_snapshot, only_whole_versions, remote_files
from tests.faults.proxy import Point, Rule
from tests.faults.scenarios.common import (
    UPLOADS,
    download_refetched,
    final_checks,
    fired,
    killer,
    put_tree,
    retire,
    upload_resent,
    wait_converged,
)
from tests.faults.trees import LARGE, TUS_ABOVE, MiB, Shape, Tree, plan, tus_requests, write
from tests.faults.world import Agent, World

CONVERGE_TIMEOUT = float(os.environ.get("FAULTS_CONVERGE_TIMEOUT", "180"))


# The tree of each trial: ``make faults`` and CI differ only here.
FULL_SHAPE = Shape(small=100, large=1, large_size=LARGE)
CI_SHAPE = Shape(small=60, large=1, large_size=LARGE)


class AgentWorld:
    def __init__(self, world: World, agent: Agent) -> None:
        self.world = world
        self.agent = agent


class AgentKill:
    """One of the four moments; ``kind`` picks it."""

    trials = 50
    ci_trials = 1

    def __init__(self, kind: str, ci: bool = False) -> None:
        self.kind = kind
        self.name = f"agent-kill.{kind}"
        self.shape = CI_SHAPE if ci else FULL_SHAPE

    async def setup(self, base: Path) -> AgentWorld:
        world = World(base).start()
        agent = world.agent("a")
        agent.configure([])
        agent.start()
        return AgentWorld(world, agent)

    async def teardown(self, w: AgentWorld) -> None:
        w.world.close()

    async def trial(self, w: AgentWorld, rng: random.Random, seed: int) -> Outcome:
        world, agent = w.world, w.agent
        proxy = world.through_proxy()
        proxy.clear()
        if not agent.alive():
            agent.start()
        top, root = f"/t{seed}", agent.dir / f"t{seed}"
        since_wall, since = time.time(), time.monotonic()
        outcome = Outcome()
        findings = outcome.findings
        files = plan(rng, self.shape if self.kind != "publish" else _publish_shape(self.shape))
        tree = Tree()
        versions: set[str] = set()

        if self.kind == "downloads":
            async with world.sdk() as sdk:
                await put_tree(sdk, top, files, agent.dir)
            for path, data in files.items():
                tree.add(path, data)
            root.mkdir(parents=True)
        else:
            write(root, files, tree)
        versions |= set(tree.files.values())

        if self.kind == "rename-storm":
            agent.configure([(root, top)])
            await wait_converged(world, [agent], top, [root], tree, CONVERGE_TIMEOUT)
            since = time.monotonic()

        rule = proxy.add(self._rule(rng, tree, agent))
        early = rng.random() < 0.1 and self.kind == "initial-sync"
        if self.kind == "rename-storm":
            tree = _rename_storm(rng, root, tree)
        else:
            agent.configure([(root, top)])
        if early:  # before the first upload: while it scans and hashes
            await asyncio.sleep(rng.uniform(0.0, 0.8))
            killer(lambda: agent.pid)()
            rule.fired_at = time.monotonic()
        if await fired(lambda: rule.fired_at is not None, 60.0):
            outcome.faults = 1
            agent.kill()  # reaped (the proxy's callback sent the signal)
            only_whole_versions(findings, "local", local_snapshot(root), versions)
            async with world.sdk() as sdk:
                only_whole_versions(findings, "server", await remote_files(sdk, top), versions)
            agent.start()
        proxy.clear()
        outcome.converge_s = await wait_converged(
            world, [agent], top, [root], tree, CONVERGE_TIMEOUT
        )
        if self.kind == "downloads":
            outcome.resent = download_refetched(proxy, since, tree)
        else:
            outcome.resent = upload_resent(proxy, since, tree)
        await final_checks(findings, world, [agent], top, [root], tree, since_wall, rng)
        if not findings.problems:
            await retire([agent], [root])
        return outcome

    def _rule(self, rng: random.Random, tree: Tree, agent: Agent) -> Rule:
        """Where the kill comes, drawn from the seed."""
        kill = killer(lambda: agent.pid, rng.choice([0.0, 0.0, rng.uniform(0.0, 0.3)]))
        point: Point = rng.choice(["body", "sent", "response"])
        offset = rng.randint(0, 24 * MiB) if point != "sent" else 0
        if self.kind == "initial-sync":
            large = [s for s in tree.sizes.values() if s > TUS_ABOVE]
            requests = -(-(len(tree.files) - len(large)) // 200) + sum(map(tus_requests, large))
            return Rule(
                "", UPLOADS, rng.randint(1, max(1, requests)), point, offset, "call", 0, kill
            )
        if self.kind == "downloads":
            nth = rng.randint(1, min(40, len(tree.files)))
            return Rule("GET", "/api/v1/files/", nth, "response", offset, "call", 0, kill)
        if self.kind == "rename-storm":
            return Rule("", "/api/v1/", rng.randint(1, 12), point, 0, "call", 0, kill)
        # publish: the last PATCH of the large file (its bytes are in, the server checks the
        # whole file and publishes), or a batch of small ones; killed while the server works
        # or just after it committed.
        point = rng.choice(["sent", "response"])
        if rng.random() < 0.6:
            big = max(s for s in tree.sizes.values())
            return Rule("PATCH", UPLOADS + "/", tus_requests(big) - 1, point, 0, "call", 0, kill)
        return Rule("POST", UPLOADS + "/batch", 1, point, 0, "call", 0, kill)


def _publish_shape(shape: Shape) -> Shape:
    return Shape(small=min(shape.small, 60), large=1, large_size=shape.large_size, folders=3)


def _rename_storm(rng: random.Random, root: Path, tree: Tree) -> Tree:
    """Rename a third of the files (some into other folders) and one folder, at once."""
    renamed = Tree(dict(tree.files), dict(tree.sizes))
    paths = sorted(tree.files)
    folders = sorted(tree.folders())
    for path in rng.sample(paths, len(paths) // 3):
        folder = rng.choice(folders) if rng.random() < 0.3 else path.rsplit("/", 1)[0]
        new = f"{folder}/renamed-{path.rsplit('/', 1)[1]}"
        if new in renamed.files:
            continue
        os.rename(root / path.lstrip("/"), root / new.lstrip("/"))
        renamed.files[new] = renamed.files.pop(path)
        renamed.sizes[new] = renamed.sizes.pop(path)
    top_folders = [f for f in folders if f.count("/") == 1]
    old = rng.choice(top_folders)
    new_folder = old + "-moved"
    os.rename(root / old.lstrip("/"), root / new_folder.lstrip("/"))
    for path in [p for p in renamed.files if p.startswith(old + "/")]:
        moved = new_folder + path[len(old) :]
        renamed.files[moved] = renamed.files.pop(path)
        renamed.sizes[moved] = renamed.sizes.pop(path)
    return renamed


def scenarios(ci: bool = False) -> list[AgentKill]:
    kinds = ("initial-sync", "downloads", "rename-storm", "publish")
    return [AgentKill(kind, ci) for kind in kinds]
