"""What the office-work scenarios share: a server with one or two agents (workstations)
that start with no folder, the issues an agent shows over its control socket, and
waiting until every side agrees when the trial cannot know the names in advance
(conflict copies are named by the agent)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from dropline.agent.control import ControlClient
from dropline.sdk.client import DroplineClient
from tests.faults.invariants import remote_files
from tests.faults.trees import Tree, local_files
from tests.faults.world import Agent, World


class Desks:
    """A server and its agents; each trial syncs a folder of its own on them."""

    def __init__(self, world: World, agents: list[Agent]) -> None:
        self.world = world
        self.agents = agents


class OnDesks:
    """The setup and teardown of a scenario played on ``desk_count`` agents of one server."""

    desk_count = 1

    async def setup(self, base: Path) -> Desks:
        return await desks(base, self.desk_count)

    async def teardown(self, d: Desks) -> None:
        d.world.close()


async def desks(base: Path, count: int) -> Desks:
    world = World(base).start()
    agents = [world.agent(name) for name in "abcd"[:count]]
    for agent in agents:
        agent.configure([])
        agent.start()
    return Desks(world, agents)


def issues(agent: Agent) -> list[dict[str, Any]]:
    with ControlClient(agent.paths.socket, timeout=10) as control:
        found: list[dict[str, Any]] = control.call("issues.list")["issues"]
    return found


def answer_issue(agent: Agent, issue_id: int, confirm: bool) -> None:
    """What the tray's buttons do: retry (for a mass delete: delete them) or dismiss
    (for a mass delete: bring them back)."""
    with ControlClient(agent.paths.socket, timeout=10) as control:
        control.call("issues.retry" if confirm else "issues.dismiss", {"id": issue_id})


def tree_of(root: Path) -> Tree:
    """The files under ``root`` as a Tree (sizes from the disk)."""
    tree = Tree()
    for path, sha in local_files(root).items():
        tree.files[path] = sha
        tree.sizes[path] = (root / path.lstrip("/")).stat().st_size
    return tree


async def wait_agreed(
    world: World, agents: list[Agent], top: str, roots: list[Path], timeout: float
) -> tuple[float, Tree]:
    """Seconds until every agent is idle and the server and every folder hold the same
    files (whatever they are), and that tree."""
    started = time.monotonic()
    async with world.sdk() as sdk:
        while True:
            found = await _agreed(sdk, agents, top, roots)
            if found is not None:
                return time.monotonic() - started, found
            if time.monotonic() - started > timeout:
                raise TimeoutError(f"the agents and the server did not agree within {timeout} s")
            for agent in agents:
                if not agent.alive():
                    raise RuntimeError(f"agent {agent.name} died")
            await asyncio.sleep(0.25)


async def _agreed(
    sdk: DroplineClient, agents: list[Agent], top: str, roots: list[Path]
) -> Tree | None:
    if not all(agent.idle() for agent in agents):
        return None
    first = tree_of(roots[0])
    if any(local_files(root) != first.files for root in roots[1:]):
        return None
    remote = {p: s for p, s in (await remote_files(sdk, top)).items() if s is not None}
    return first if remote == first.files else None
