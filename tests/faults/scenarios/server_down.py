"""The server is down for minutes while two users keep working: their agents queue the
work, back off (with jitter) instead of hammering, show 'offline' (the state the tray
shows), and drain when the server returns, without a storm of requests."""

from __future__ import annotations

import asyncio
import itertools
import random
import statistics
import time
from pathlib import Path

from tests.faults.harness import Outcome
from tests.faults.scenarios.common import final_checks, wait_converged
from tests.faults.trees import Shape, Tree, plan, write
from tests.faults.world import Agent, World

CONVERGE_TIMEOUT = 300.0


class DownWorld:
    def __init__(self, world: World, a: Agent, b: Agent) -> None:
        self.world, self.a, self.b = world, a, b


class ServerDown:
    name = "server-down"
    trials = 1
    ci_trials = 0  # the agents take over a minute and a half to drain: make faults only

    def __init__(self, ci: bool = False) -> None:
        self.down_for = 15.0 if ci else 150.0
        self.shape = Shape(small=30 if ci else 100, large=0, large_size=0, folders=4)

    async def setup(self, base: Path) -> DownWorld:
        world = World(base).start()
        a, b = world.agent("a"), world.agent("b")
        for agent in (a, b):
            agent.configure([])
            agent.start()
        return DownWorld(world, a, b)

    async def teardown(self, w: DownWorld) -> None:
        w.world.close()

    async def trial(self, w: DownWorld, rng: random.Random, seed: int) -> Outcome:
        world, a, b = w.world, w.a, w.b
        proxy = world.through_proxy()
        top = f"/o{seed}"
        roots = [a.dir / f"o{seed}", b.dir / f"o{seed}"]
        outcome = Outcome()
        since_wall = time.time()
        tree = write(roots[0], plan(rng, self.shape))
        a.configure([(roots[0], top)])
        b.configure([(roots[1], top)])
        await wait_converged(world, [a, b], top, roots, tree, CONVERGE_TIMEOUT)

        world.kill_server()
        down_at = time.monotonic()
        outcome.faults = 1
        offline_after = await self._work_while_down(w, rng, roots, tree, down_at)
        queued = sum(f["pending"] for ag in (a, b) for f in ag.status()["folders"])
        attempts = [t for t in proxy.connects if down_at + 10 <= t]
        minutes = max(1e-9, (time.monotonic() - down_at - 10) / 60)
        await asyncio.to_thread(world.restart_server)
        back_at = time.monotonic()
        outcome.converge_s = await wait_converged(world, [a, b], top, roots, tree, CONVERGE_TIMEOUT)
        peak = proxy.peak_rate(back_at, 10.0)
        moved = len(tree.files)
        outcome.notes.update(
            {
                "peak_rps": float(peak),
                "offline_attempts_per_min": round(len(attempts) / minutes, 1),
                "seconds_to_offline": round(offline_after, 1),
                "queued_while_down": float(queued),
            }
        )
        findings = outcome.findings
        if offline_after < 0:
            findings.fail("the agents never showed 'offline' while the server was down")
        if queued == 0:
            findings.fail("nothing was queued while the server was down")
        if peak > 20 + 2 * moved:  # a storm: many requests per file that had to move
            findings.fail(f"{peak} requests in one second after the server came back")
        gaps = [later - first for first, later in itertools.pairwise(attempts)]
        if len(gaps) >= 3 and statistics.pstdev(gaps) < 0.01:
            findings.fail("the agents retried in lockstep (no jitter)")
        if len(attempts) / minutes > 120:
            findings.fail(f"{len(attempts) / minutes:.0f} connection attempts a minute while down")
        await final_checks(findings, world, [a, b], top, roots, tree, since_wall, rng)
        return outcome

    async def _work_while_down(
        self, w: DownWorld, rng: random.Random, roots: list[Path], tree: Tree, down_at: float
    ) -> float:
        """Both users add, edit and delete files while the server is away; returns how
        long until both agents said 'offline' (-1: never)."""
        offline_after = -1.0
        end = down_at + self.down_for
        step = 0
        while time.monotonic() < end:
            for agent, root in zip((w.a, w.b), roots, strict=True):
                if step % 4 == 0:
                    path = f"/offline/{agent.name}-{step:04d}.txt"
                    data = f"{path} written while the server was down {rng.random()}".encode()
                    write(root, {path: data}, tree)  # the other agent gets it later
            if step == 8:  # an edit and a delete by user A
                victim = sorted(p for p in tree.files if not p.startswith("/offline"))[0]
                data = f"{victim} edited offline".encode()
                write(roots[0], {victim: data}, tree)
                gone = sorted(p for p in tree.files if not p.startswith("/offline"))[-1]
                (roots[0] / gone.lstrip("/")).unlink()
                del tree.files[gone], tree.sizes[gone]
            if offline_after < 0 and all(ag.status()["state"] == "offline" for ag in (w.a, w.b)):
                offline_after = time.monotonic() - down_at
            step += 1
            await asyncio.sleep(0.5)
        return offline_after


def scenarios(ci: bool = False) -> list[ServerDown]:
    return [ServerDown(ci)]
