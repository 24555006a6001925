"""A real agent syncing a folder through nginx to three nodes while each node in turn is
killed with SIGKILL, left down a few seconds and started again on its port: the agent
uploads what is written in the folder and downloads what another client uploads, and
in the end nothing is lost, the folder and the server agree file for file, and the
agent's journal holds no work left over.

The checks are the fault campaign's (tests/faults): its agent process, its wait until
everything agrees and its convergence and download checks."""

from __future__ import annotations

import asyncio
import os
import random
import re
import sqlite3
import threading
import time
from pathlib import Path

import httpx

from dropline.sdk.client import ApiKeyCredentials, DroplineClient, RetryPolicy
from dropline.sdk.errors import UnavailableError
from tests.faults.invariants import Findings, converged, downloads_match, sqlite_ok
from tests.faults.scenarios.common import put_tree, wait_converged
from tests.faults.trees import MiB, Shape, Tree, plan, write
from tests.faults.world import Agent, World
from tests.server.nodes.conftest import Cluster
from tests.support.live import ServerProcess

TOP = "/failover"
DOWN_SECONDS = 2.5  # how long each node stays dead
WRITE_SECONDS = 10.0  # the folder's files are written over this long
# The SDK client of the other user: patient enough to ride out a node's death.
PATIENT = RetryPolicy(attempts=8, initial=0.2, maximum=1.0)


class ThroughNginx(World):
    """The fault campaign's world cut down to what its convergence wait asks of it: an
    SDK client, here of nginx (the nodes are the cluster fixture's)."""

    def __init__(self, front: str, key: str) -> None:  # no server process of its own
        self.front, self.key = front, key

    def sdk(self) -> DroplineClient:
        return DroplineClient(self.front, ApiKeyCredentials(self.key), retry=PATIENT)


def ready(node: ServerProcess, timeout: float = 30) -> None:
    """Until the node's ``/readyz`` says its database and object store answer."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(node.url + "/readyz", timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, f"{node.url} never became ready"
        time.sleep(0.05)


def kill_and_restart_each(cluster: Cluster, killed_at: list[float]) -> None:
    """Node 1, then 2, then 3: SIGKILL, down a few seconds, back on its port and ready."""
    for node in cluster.nodes:
        port = node.port
        node.kill()
        killed_at.append(time.monotonic())
        # As many reads through nginx as there are nodes: round robin sends one to the
        # dead node whatever the agent is doing just then, and nginx must pass it on.
        for _ in cluster.nodes:
            assert httpx.get(cluster.front + "/readyz", timeout=10).status_code == 200
        time.sleep(DOWN_SECONDS)
        node.start(timeout=60)
        assert node.port == port, "a node must come back on the port nginx knows"
        ready(node)
        time.sleep(0.5)  # some traffic on three nodes before the next death


def write_over_time(root: Path, files: dict[str, bytes], tree: Tree) -> None:
    """Write ``files`` in small groups spread over WRITE_SECONDS, then rename some and
    delete one, as a user working in the folder would."""
    paths = list(files)
    groups = [paths[i : i + 8] for i in range(0, len(paths), 8)]
    for group in groups:
        write(root, {p: files[p] for p in group}, tree)
        time.sleep(WRITE_SECONDS / len(groups))
    small = sorted(p for p, size in tree.sizes.items() if size < MiB)
    for old in small[:3]:
        moved(root, tree, old, "/renamed" + old)
    moved(root, tree, "/big-0.bin", "/big-0-renamed.bin")
    gone = small[3]
    (root / gone.lstrip("/")).unlink()
    del tree.files[gone], tree.sizes[gone]


def moved(root: Path, tree: Tree, old: str, new: str) -> None:
    (root / new.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
    os.rename(root / old.lstrip("/"), root / new.lstrip("/"))
    tree.files[new], tree.sizes[new] = tree.files.pop(old), tree.sizes.pop(old)


async def upload_from_elsewhere(world: ThroughNginx, files: dict[str, bytes], tmp: Path) -> None:
    """The other client's uploads through nginx; a call that failed outright while a node
    died is made again, as an integration would (the same bytes to the same paths)."""
    for attempt in range(5):
        try:
            async with world.sdk() as sdk:
                await put_tree(sdk, TOP, files, tmp)
            return
        except UnavailableError:
            if attempt == 4:
                raise
            await asyncio.sleep(1)


def journal_leftovers(journal: Path) -> dict[str, int]:
    """Rows of work the agent has not finished: queued paths, transfers, open issues."""
    conn = sqlite3.connect(f"file:{journal}?mode=ro", uri=True, timeout=30)
    try:
        return {
            table: int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
            for table in ("queue", "transfers", "issues")
        }
    finally:
        conn.close()


def test_an_agent_syncing_through_nginx_loses_nothing_while_each_node_dies_in_turn(
    cluster: Cluster, tmp_path: Path
) -> None:
    rng = random.Random(1313)
    local = plan(rng, Shape(small=150, large=3, large_size=3 * MiB, folders=6))
    remote = {
        f"/from-api{p}": data
        for p, data in plan(rng, Shape(small=30, large=1, large_size=2 * MiB, folders=2)).items()
    }
    world = ThroughNginx(cluster.front, cluster.key)
    agent = Agent(tmp_path, "agent", cluster.front, cluster.key)
    root = agent.dir / "folder"
    agent.configure([(root, TOP)])
    agent.start()
    try:
        asyncio.run(sync_through_deaths(cluster, world, agent, root, local, remote, tmp_path))
    finally:
        agent.stop()


async def sync_through_deaths(
    cluster: Cluster,
    world: ThroughNginx,
    agent: Agent,
    root: Path,
    local: dict[str, bytes],
    remote: dict[str, bytes],
    tmp: Path,
) -> None:
    tree = Tree()
    killed_at: list[float] = []
    writer = threading.Thread(target=write_over_time, args=(root, local, tree), daemon=True)
    started = time.monotonic()
    writer.start()
    await asyncio.sleep(1.0)  # the agent is busy uploading before the first death
    deaths = asyncio.create_task(asyncio.to_thread(kill_and_restart_each, cluster, killed_at))
    await upload_from_elsewhere(world, remote, tmp)
    await deaths
    await asyncio.to_thread(writer.join, 60)
    assert not writer.is_alive()
    for path, data in remote.items():
        tree.add(path, data)
    # The deaths came while the folder was still being written.
    assert len(killed_at) == 3 and killed_at[0] - started < WRITE_SECONDS
    # nginx met each dead node at least once and passed the request on: nothing that
    # may be sent twice was answered 502 (only a POST or PATCH cut off inside a node).
    logs = cluster.nodes[0].data_dir.parent / "nginx"
    errors = (logs / "error.log").read_text()
    for node in cluster.nodes:
        assert f"127.0.0.1:{node.port}" in errors, f"no request met the dead node {node.port}"
    assert "no live upstreams" not in errors
    failed = re.findall(r'"([A-Z]+) [^"]*" 502 ', (logs / "access.log").read_text())
    assert set(failed) <= {"POST", "PATCH"}, failed

    await wait_converged(world, [agent], TOP, [root], tree, timeout=40)
    findings = Findings()
    async with world.sdk() as sdk:
        await converged(findings, sdk, TOP, tree, [root])
        await downloads_match(findings, sdk, TOP, tree, random.Random(7))
    sqlite_ok(findings, agent.journal)
    # Also no conflict copies and no duplicates: both listings hold the tree and no more.
    assert not findings.problems, findings.problems
    assert len(tree.files) == len(local) - 1 + len(remote)  # one file was deleted
    assert findings.files_checked == 2 * len(tree.files)  # on the server and in the folder
    assert journal_leftovers(agent.journal) == {"queue": 0, "transfers": 0, "issues": 0}
    assert not [p for p in root.rglob("*") if "(conflicted copy" in p.name]
