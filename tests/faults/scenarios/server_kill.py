"""kill -9 of the server mid-PATCH, mid-publish, mid-move of a large folder, mid-webhook
delivery and mid-transfer job; it starts again on the same data, and the agents (two,
one writing, one receiving) and the outbox must carry on with nothing lost.

One server and two agents serve all the trials of a scenario; each trial syncs a folder
of its own (``/s<seed>``) on both agents.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import threading
import time
from pathlib import Path

from dropline.sdk.client_ops import Transfers, Webhooks
from tests.faults.harness import Outcome
from tests.faults.invariants import only_whole_versions, remote_files
from tests.faults.proxy import Point, Rule
from tests.faults.scenarios.common import (
    UPLOADS,
    final_checks,
    fired,
    killer,
    retire,
    upload_resent,
    wait_converged,
)
from tests.faults.trees import CHUNK, LARGE, MiB, Shape, Tree, plan, write
from tests.faults.world import Agent, World
from tests.support.receiver import Receiver

CONVERGE_TIMEOUT = float(os.environ.get("FAULTS_CONVERGE_TIMEOUT", "180"))
HOOK = "/hook"


class ServerWorld:
    def __init__(self, world: World, a: Agent, b: Agent, receiver: Receiver) -> None:
        self.world, self.a, self.b, self.receiver = world, a, b, receiver


class ServerKill:
    trials = 20

    def __init__(self, kind: str, ci: bool = False) -> None:
        self.kind = kind
        self.ci_trials = 1
        self.name = f"server-kill.{kind}"
        self.shape = Shape(small=30 if ci else 40, large=1, large_size=LARGE, folders=4)
        self.folder_shape = Shape(small=100 if ci else 200, large=0, large_size=0, folders=6)

    async def setup(self, base: Path) -> ServerWorld:
        world = World(base).start()
        receiver = Receiver().start()
        a, b = world.agent("a"), world.agent("b")
        for agent in (a, b):
            agent.configure([])
            agent.start()
        if self.kind == "webhook":
            async with world.sdk() as sdk:
                await Webhooks(sdk).create(receiver.url + HOOK, ["file.uploaded"])
        return ServerWorld(world, a, b, receiver)

    async def teardown(self, w: ServerWorld) -> None:
        w.receiver.stop()
        w.world.close()

    async def trial(self, w: ServerWorld, rng: random.Random, seed: int) -> Outcome:
        world, a, b = w.world, w.a, w.b
        proxy = world.through_proxy()
        proxy.clear()
        if not world.server.proc or world.server.proc.poll() is not None:
            world.restart_server()
        top = f"/s{seed}"
        roots = [a.dir / f"s{seed}", b.dir / f"s{seed}"]
        outcome = Outcome()
        since_wall, since = time.time(), time.monotonic()
        files = plan(rng, self.shape)
        if self.kind == "move":  # a large folder: many files at several depths
            files = {f"/big{p}": d for p, d in plan(rng, self.folder_shape).items()}
        tree = Tree()
        if self.kind in ("move", "transfer"):  # the data is there and synced before the fault
            write(roots[0], files, tree)
            a.configure([(roots[0], top)])
            b.configure([(roots[1], top)])
            await wait_converged(world, [a, b], top, roots, tree, CONVERGE_TIMEOUT)
            since = time.monotonic()
        versions = set(tree.files.values())
        if self.kind == "transfer":
            await self._transfer(w, rng, top, tree, outcome)
        elif self.kind == "webhook":
            await self._webhook(w, rng, top, files, tree, roots, outcome)
        else:
            rule = proxy.add(self._rule(rng, world))
            if self.kind == "move":
                tree = _rename_folder(roots[0], tree, "/big", "/big-moved")
            else:
                write(roots[0], files, tree)
                versions |= set(tree.files.values())
                a.configure([(roots[0], top)])
                b.configure([(roots[1], top)])
            if await fired(lambda: rule.fired_at is not None, 90.0):
                outcome.faults = 1
                await self._restart(world, rng)
                async with world.sdk() as sdk:
                    seen = await remote_files(sdk, top)
                only_whole_versions(outcome.findings, "server", seen, versions)
        proxy.clear()
        outcome.converge_s = await wait_converged(world, [a, b], top, roots, tree, CONVERGE_TIMEOUT)
        outcome.resent = upload_resent(proxy, since, tree) if self.kind != "move" else 0
        await final_checks(outcome.findings, world, [a, b], top, roots, tree, since_wall, rng)
        if not outcome.findings.problems:
            await retire([a, b], roots)
        return outcome

    def _rule(self, rng: random.Random, world: World) -> Rule:
        kill = killer(lambda: world.server.proc.pid if world.server.proc else 0)
        if self.kind == "patch":  # some way into one of the large file's two PATCH bodies
            nth = rng.randint(1, 2)
            into = rng.randint(0, (CHUNK if nth == 1 else int(LARGE * 0.9) - CHUNK) - 1)
            return Rule("PATCH", UPLOADS + "/", nth, "body", into, "call", 0, kill)
        if self.kind == "publish":  # the body is in: the server verifies and publishes
            late = killer(
                lambda: world.server.proc.pid if world.server.proc else 0, rng.uniform(0, 0.15)
            )
            point: Point = "sent"
            if rng.random() < 0.6:
                return Rule("PATCH", UPLOADS + "/", 2, point, 0, "call", 0, late)
            return Rule("POST", UPLOADS + "/batch", 1, point, 0, "call", 0, late)
        # move: the agent's PATCH of the folder is in; the server rewrites the subtree
        late = killer(
            lambda: world.server.proc.pid if world.server.proc else 0, rng.uniform(0, 0.08)
        )
        return Rule("PATCH", "/api/v1/files/", 1, "sent", 0, "call", 0, late)

    async def _restart(self, world: World, rng: random.Random) -> None:
        """Reap the killed server, leave it down a moment, start it on the same data."""
        assert world.server.proc is not None
        await asyncio.to_thread(world.server.proc.wait, 30)
        world.kill_server()
        await asyncio.sleep(rng.uniform(0.0, 2.0))
        await asyncio.to_thread(world.restart_server)

    async def _transfer(
        self, w: ServerWorld, rng: random.Random, top: str, tree: Tree, outcome: Outcome
    ) -> None:
        """A server-side copy of the trial's files, killed while the job runs."""
        world = w.world
        async with world.sdk() as sdk:
            entries = [await sdk.metadata(top + p) for p in sorted(tree.files)[:30]]
            big = await sdk.metadata(top + max(tree.sizes, key=lambda p: tree.sizes[p]))
            ids = [e.id for e in entries if e.id != big.id] + [big.id]
            job = await Transfers(sdk).start(ids, {"type": "folder", "path": f"{top}-copies"})
            await asyncio.sleep(rng.uniform(0.0, 0.3))
        world.kill_server()
        outcome.faults = 1
        await self._restart(world, rng)
        async with world.sdk() as sdk:
            done = await Transfers(sdk).wait(job.id, timeout=CONVERGE_TIMEOUT, interval=0.2)
            if done.state != "completed":
                outcome.findings.fail(f"transfer {job.id} ended {done.state}: {done.error}")
                return
            copies = await remote_files(sdk, f"{top}-copies")
        names = {p.rsplit("/", 1)[1]: sha for p, sha in tree.files.items()}
        for path, sha in copies.items():
            if sha is not None and names.get(path.rsplit("/", 1)[1]) != sha:
                outcome.findings.fail(f"transfer copy {path} does not match its source", lost=1)
        copied = sum(1 for sha in copies.values() if sha is not None)
        if copied != len(ids):
            outcome.findings.fail(
                f"transfer copied {copied} files of {len(ids)}", lost=len(ids) - copied
            )
        outcome.findings.files_checked += copied

    async def _webhook(
        self,
        w: ServerWorld,
        rng: random.Random,
        top: str,
        files: dict[str, bytes],
        tree: Tree,
        roots: list[Path],
        outcome: Outcome,
    ) -> None:
        """Uploads announce themselves by webhook; the server dies while one delivery is
        at the receiver (held there, unanswered). Every upload must still be announced."""
        world, receiver = w.world, w.receiver
        before = len(receiver.requests)
        hold = threading.Event()
        receiver.hold[HOOK] = hold
        small = {p: d for p, d in files.items() if len(d) <= MiB}
        write(roots[0], small, tree)
        w.a.configure([(roots[0], top)])
        w.b.configure([(roots[1], top)])
        nth = rng.randint(1, min(10, len(small)))
        await asyncio.to_thread(receiver.wait_count, before + nth, 60)
        world.kill_server()  # with the delivery in flight (the receiver has not answered)
        outcome.faults = 1
        hold.set()
        del receiver.hold[HOOK]
        await self._restart(world, rng)
        await wait_converged(world, [w.a, w.b], top, roots, tree, CONVERGE_TIMEOUT)
        wanted = {top + p for p in small}

        def announced() -> set[str]:
            found = set()
            for r in receiver.requests[before:]:
                try:  # a delivery cut short by the kill arrives with part of its body
                    data = json.loads(r.body).get("data", {})
                except ValueError:
                    continue
                found.add(data.get("entry", {}).get("path"))
            return found & wanted

        deadline = time.monotonic() + 60
        while announced() != wanted and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        missing = wanted - announced()
        if missing:
            outcome.findings.fail(
                f"{len(missing)} uploads never announced, such as {sorted(missing)[:2]}"
            )
        ids = [r.headers.get("webhook-id") for r in receiver.requests[before:]]
        outcome.notes["delivered_twice"] = float(len(ids) - len(set(ids)))
        outcome.findings.files_checked += len(wanted) - len(missing)


def _rename_folder(root: Path, tree: Tree, old: str, new: str) -> Tree:
    os.rename(root / old.lstrip("/"), root / new.lstrip("/"))
    moved = Tree()
    for path, sha in tree.files.items():
        target = new + path[len(old) :] if path.startswith(old + "/") else path
        moved.files[target] = sha
        moved.sizes[target] = tree.sizes[path]
    return moved


def scenarios(ci: bool = False) -> list[ServerKill]:
    kinds = ("patch", "publish", "move", "webhook", "transfer")
    return [ServerKill(kind, ci) for kind in kinds]
