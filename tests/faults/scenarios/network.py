"""The network between agent and server goes bad, through the fault proxy: connections
reset mid-body, a stall longer than the client's timeouts, an answer lost after the
server committed (so the client repeats what already happened), and a modem's speed.
Uploads and downloads must complete with matching hashes, at most one chunk sent again
per cut, and nothing done twice.
"""

from __future__ import annotations

import asyncio
import random
import shutil
import time
from pathlib import Path

from tests.faults.harness import Outcome
from tests.faults.proxy import Rule
from tests.faults.scenarios.common import (
    UPLOADS,
    download_refetched,
    final_checks,
    put_tree,
    upload_resent,
    wait_converged,
)
from tests.faults.trees import MiB, Shape, Tree, plan, write
from tests.faults.world import Agent, World

# The measure of "a chunk" here: half the agent's 32 MiB upload chunk, so the check
# "at most one chunk re-sent per cut" is stricter than it needs to be.
CHUNK = 16 * MiB
STALL = 35.0  # past the client's 30 s timeouts
MODEM = 7_000  # bytes per second each way: a 56 kbit/s modem
CONVERGE_TIMEOUT = 240.0


class NetWorld:
    def __init__(self, world: World, agent: Agent) -> None:
        self.world, self.agent = world, agent


class Network:
    def __init__(self, kind: str, trials: int, ci_trials: int, ci: bool) -> None:
        self.kind = kind
        self.name = f"network.{kind}"
        self.trials, self.ci_trials = trials, ci_trials
        self.ci = ci

    async def setup(self, base: Path) -> NetWorld:
        world = World(base).start()
        agent = world.agent("a")
        agent.configure([])
        agent.start()
        return NetWorld(world, agent)

    async def teardown(self, w: NetWorld) -> None:
        w.world.close()

    def _shapes(self) -> tuple[Shape, Shape]:
        """What goes up and what comes down."""
        if self.kind == "throttle":
            n = 3 if self.ci else 8
            return Shape(n, 0, 0, folders=2), Shape(n, 0, 0, folders=2)
        big = 2 * CHUNK + 4 * MiB if not self.ci else CHUNK + 4 * MiB
        return Shape(30, 1, big, folders=3), Shape(30, 1, big, folders=3)

    async def trial(self, w: NetWorld, rng: random.Random, seed: int) -> Outcome:
        world, agent = w.world, w.agent
        proxy = world.through_proxy()
        proxy.clear()
        top, root = f"/n{seed}", agent.dir / f"n{seed}"
        outcome = Outcome()
        since_wall, since = time.time(), time.monotonic()
        up_shape, down_shape = self._shapes()
        if self.kind == "throttle":  # small files: a modem's worth
            up = {p: d[:4096] for p, d in plan(rng, up_shape).items()}
            down = {"/from-server" + p: d[:4096] for p, d in plan(rng, down_shape).items()}
        else:
            up = plan(rng, up_shape)
            down = {"/from-server" + p: d for p, d in plan(rng, down_shape).items()}
        async with world.sdk() as sdk:
            await put_tree(sdk, top, down, agent.dir)
        tree = write(root, up)
        for path, data in down.items():
            tree.add(path, data)
        rules = self._rules(rng)
        for rule in rules:
            proxy.add(rule)
        if self.kind == "throttle":
            proxy.rate = MODEM
        agent.configure([(root, top)])
        outcome.converge_s = await wait_converged(
            world, [agent], top, [root], tree, CONVERGE_TIMEOUT
        )
        outcome.faults = sum(1 for r in rules if r.fired_at is not None)
        if self.kind == "throttle":
            outcome.faults = 1  # the whole trial at a modem's speed
        proxy.clear()
        cuts = sum(1 for r in rules if r.fired_at is not None and r.method == "PATCH")
        resent_up = upload_resent(proxy, since, _up_only(tree, up))
        refetched = download_refetched(proxy, since, _down_only(tree, down))
        outcome.resent = resent_up + refetched
        if cuts:
            outcome.notes["resent_chunks_per_cut"] = round(resent_up / (CHUNK * cuts), 2)
            if resent_up > CHUNK * cuts:
                outcome.findings.fail(f"{resent_up} bytes went up again for {cuts} cut(s)")
        gets = sum(1 for r in rules if r.fired_at is not None and r.method == "GET")
        if gets and refetched > CHUNK * gets:
            outcome.findings.fail(f"{refetched} bytes came down again for {gets} cut(s)")
        await final_checks(outcome.findings, world, [agent], top, [root], tree, since_wall, rng)
        if not outcome.findings.problems:
            agent.configure([])
            for _ in range(200):
                if not agent.status()["folders"]:
                    break
                await asyncio.sleep(0.05)
            shutil.rmtree(root, ignore_errors=True)
        return outcome

    def _rules(self, rng: random.Random) -> list[Rule]:
        if self.kind == "reset":  # one upload and one download cut somewhere in a body
            return [
                Rule("PATCH", UPLOADS + "/", rng.randint(1, 2), "body", rng.randint(1, CHUNK)),
                Rule("GET", "/api/v1/files/", 1, "response", rng.randint(1, 4 * MiB)),
            ]
        if self.kind == "stall":
            if rng.random() < 0.5:
                return [
                    Rule("PATCH", UPLOADS + "/", 1, "body", rng.randint(1, CHUNK), "stall", STALL)
                ]
            return [Rule("POST", UPLOADS + "/batch", 1, "response", 0, "stall", STALL)]
        if self.kind == "lost-response":  # the server did it; the client never hears
            choices = [
                Rule("POST", UPLOADS + "/batch", 1, "response"),
                Rule("PATCH", UPLOADS + "/", 2, "response"),
                Rule("POST", "/api/v1/folders", rng.randint(1, 3), "response"),
                Rule("POST", UPLOADS, 1, "response"),
            ]
            return rng.sample(choices, 2)
        return []  # throttle: the proxy's rate is the fault


def _up_only(tree: Tree, up: dict[str, bytes]) -> Tree:
    out = Tree()
    for path in up:
        out.files[path], out.sizes[path] = tree.files[path], tree.sizes[path]
    return out


def _down_only(tree: Tree, down: dict[str, bytes]) -> Tree:
    out = Tree()
    for path in down:
        out.files[path], out.sizes[path] = tree.files[path], tree.sizes[path]
    return out


def scenarios(ci: bool = False) -> list[Network]:
    return [
        Network("reset", 6, 1, ci),
        Network("lost-response", 6, 1, ci),
        Network("stall", 2, 0, ci),
        Network("throttle", 2, 1, ci),
    ]
