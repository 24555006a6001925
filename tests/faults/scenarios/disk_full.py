"""A full disk on a small real file system: a tmpfs mounted with a size limit (the
campaign runs as root, as CI does), unmounted when the scenario ends.

- ``disk-full.server``: the server's file storage (staged uploads, blobs, checksums) is
  on the tmpfs, filled up before an agent uploads a tree: the uploads are refused with
  507 ``insufficient-storage``, nothing half-written becomes visible, and once space is
  freed the same uploads go through and everything converges.
- ``disk-full.agent``: an agent's sync folder is on the tmpfs; the server has new
  versions, and the disk is full (or fills up midway through the large download): the
  download is refused cleanly, the agent reports a per-file ``disk-full`` issue, the file
  in the folder stays the old version, no partial is left, and once space is freed the
  new versions arrive and the issue clears.
"""

from __future__ import annotations

import contextlib
import os
import random
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx

from dropline.agent.control import ControlClient
from dropline.sync.fs import PARTIAL_DIR
from tests.faults.harness import Outcome
from tests.faults.invariants import local_snapshot, only_whole_versions, remote_files
from tests.faults.proxy import Rule
from tests.faults.scenarios.common import (
    UPLOADS,
    download_refetched,
    final_checks,
    fired,
    put_tree,
    retire,
    upload_resent,
    wait_converged,
)
from tests.faults.trees import MiB, Shape, Tree, content, plan, sha_of, write
from tests.faults.world import Agent, World
from tests.server.tus import upload

CONVERGE_TIMEOUT = 180.0
INSUFFICIENT = "https://dropline.dev/problems/insufficient-storage"
# Sizes: the server's disk holds every trial's blobs (they stay), the agent's one trial's
# folder at a time (a passing trial's folder is removed).
SERVER_DISK = 160 * MiB
AGENT_DISK = 48 * MiB


def mount(where: Path, size: int) -> Path:
    """A tmpfs of ``size`` bytes at ``where`` (:func:`unmount` when done)."""
    where.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], check=True)
    return where


def unmount(mount: Path) -> None:
    # A file the server or an agent closes a moment late keeps the mount busy: try a
    # while, then detach lazily (it goes when that last file closes).
    deadline = time.monotonic() + 10
    while subprocess.run(["umount", str(mount)], capture_output=True).returncode != 0:
        if time.monotonic() > deadline:
            subprocess.run(["umount", "-l", str(mount)], check=True)
            return
        time.sleep(0.2)


def free_bytes(disk: Path) -> int:
    stat = os.statvfs(disk)
    return stat.f_bavail * stat.f_frsize


def fill(disk: Path, leave: int) -> Path:
    """Take all of ``disk``'s free space but ``leave`` bytes (real pages: fallocate)."""
    filler = disk / "filler"
    take = free_bytes(disk) - leave
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        if take > 0:
            os.posix_fallocate(fd, os.fstat(fd).st_size, take)
    finally:
        os.close(fd)
    return filler


class DiskWorld:
    def __init__(self, world: World, agent: Agent, disk: Path) -> None:
        self.world, self.agent, self.disk = world, agent, disk


class DiskFull:
    """``side`` is where the disk fills up: ``server`` or ``agent``."""

    trials = 10
    ci_trials = 1

    def __init__(self, side: str, ci: bool = False) -> None:
        self.side = side
        self.name = f"disk-full.{side}"
        self.large = (6 if ci else 8) * MiB

    async def setup(self, base: Path) -> DiskWorld:
        base.mkdir(parents=True, exist_ok=True)
        disk = mount(base / "disk", SERVER_DISK if self.side == "server" else AGENT_DISK)
        world = None
        try:
            world = World(base)
            if self.side == "server":
                # The server's file storage on the small disk; its database stays outside.
                (base / "server").mkdir(parents=True, exist_ok=True)
                for name in ("uploads", "blobs", "checksums"):
                    (disk / name).mkdir()
                    (base / "server" / name).symlink_to(disk / name)
            world.start()
            agent = world.agent("a")
            agent.configure([])
            agent.start()
        except BaseException:
            try:
                if world is not None:
                    world.close()
            finally:
                unmount(disk)
            raise
        return DiskWorld(world, agent, disk)

    async def teardown(self, w: DiskWorld) -> None:
        try:
            w.world.close()
        finally:
            unmount(w.disk)

    async def trial(self, w: DiskWorld, rng: random.Random, seed: int) -> Outcome:
        if not w.agent.alive():
            w.agent.start()
        with contextlib.suppress(FileNotFoundError):
            (w.disk / "filler").unlink()  # a failed earlier trial's
        if self.side == "server":
            return await self._server_trial(w, rng, seed)
        return await self._agent_trial(w, rng, seed)

    # -- the server's disk -------------------------------------------------------------

    async def _server_trial(self, w: DiskWorld, rng: random.Random, seed: int) -> Outcome:
        world, agent = w.world, w.agent
        proxy = world.through_proxy()
        proxy.clear()
        top, root = f"/s{seed}", agent.dir / f"s{seed}"
        since_wall = time.time()
        outcome = Outcome()
        findings = outcome.findings
        files = plan(rng, Shape(small=30, large=1, large_size=self.large, folders=4))
        # Room for none of it, for some small files, or for part of the large file.
        leave = rng.choice([0, rng.randint(64 * 1024, MiB), rng.randint(2 * MiB, 5 * MiB)])
        filler = fill(w.disk, leave)
        tree = write(root, files)
        versions = set(tree.files.values())
        since = time.monotonic()
        agent.configure([(root, top)])

        def refused() -> bool:
            return any(e.status == 507 for e in proxy.seen("", UPLOADS, since))

        if not await fired(refused, 60.0):
            raise RuntimeError("no upload was refused with 507 on the full disk")
        outcome.faults = 1
        # The client retries a 507 a few times, then the file becomes an issue.
        if not await fired(lambda: _has(agent, "server-full"), 90.0):
            findings.fail("the agent shows no 'server-full' issue while the server is full")
        async with world.sdk() as sdk:
            only_whole_versions(findings, "server", await remote_files(sdk, top), versions)
        self._check_problem(findings, world, top)

        filler.unlink()
        freed = time.monotonic()
        outcome.converge_s = await wait_converged(
            world, [agent], top, [root], tree, CONVERGE_TIMEOUT
        )
        outcome.resent = upload_resent(proxy, since, tree)
        outcome.notes["refused_507"] = float(
            sum(1 for e in proxy.seen("", UPLOADS, since) if e.status == 507)
        )
        await final_checks(findings, world, [agent], top, [root], tree, since_wall, rng)
        await fired(lambda: not _has(agent, "server-full"), 30.0)
        if _has(agent, "server-full"):
            findings.fail("the 'server-full' issue stayed after the uploads went through")
        outcome.notes["freed_to_converged_s"] = round(time.monotonic() - freed, 1)
        if not findings.problems:
            await retire([agent], [root])
        return outcome

    def _check_problem(self, findings: Any, world: World, top: str) -> None:
        """An upload that cannot fit is 507 with the problem type, and is not listed."""
        headers = {"Authorization": f"Bearer {world.key}", "Tus-Resumable": "1.0.0"}
        name = f"{top}-probe.bin"
        with httpx.Client(base_url=world.url, headers=headers, timeout=30) as client:
            answer = upload(client, name, os.urandom(free_bytes_of(world) + 2 * MiB))
            if answer.status_code != 507:
                findings.fail(f"an upload that cannot fit answered {answer.status_code}")
            elif answer.json().get("type") != INSUFFICIENT:
                findings.fail(f"the 507 has the problem type {answer.json().get('type')}")
            listed = client.get("/api/v1/files", params={"path": "/"}).json()["entries"]
            if any(e["path"] == name for e in listed):
                findings.fail("an upload refused for lack of space is listed")

    # -- the agent's disk --------------------------------------------------------------

    async def _agent_trial(self, w: DiskWorld, rng: random.Random, seed: int) -> Outcome:
        world, agent = w.world, w.agent
        proxy = world.through_proxy()
        proxy.clear()
        top, root = f"/a{seed}", w.disk / f"a{seed}"
        since_wall = time.time()
        outcome = Outcome()
        findings = outcome.findings
        files = plan(rng, Shape(small=20, large=1, large_size=self.large, folders=3))
        tree = Tree()
        async with world.sdk() as sdk:
            await put_tree(sdk, top, files, agent.dir)
        for path, data in files.items():
            tree.add(path, data)
        root.mkdir()
        agent.configure([(root, top)])
        await wait_converged(world, [agent], top, [root], tree, CONVERGE_TIMEOUT)

        # New versions on the server: the large file (bigger) and a few small ones.
        big = next(p for p in files if p.startswith("/big-"))
        old_big = tree.files[big]
        newer = {big: content(rng, big, int(self.large * rng.uniform(1.2, 1.5)))}
        for path in rng.sample(sorted(p for p in files if p != big), 4):
            newer[path] = content(rng, path, rng.randint(1, 16 * 1024))
        versions = set(tree.files.values())
        midway = rng.random() < 0.5
        if midway:  # room for it when it starts; the disk fills up as it comes down
            fill(w.disk, len(newer[big]) + 4 * MiB)
        else:  # room for the small files, not for the large one
            fill(w.disk, rng.randint(3 * MiB, len(newer[big]) - MiB))
        since = time.monotonic()

        def fill_up() -> None:  # on the proxy's thread, before it passes on more bytes
            fill(w.disk, 256 * 1024)

        async with world.sdk() as sdk:
            if midway:
                entry = await sdk.metadata(top + big)
                at = rng.randint(1, len(newer[big]) // 2)
                proxy.add(
                    Rule(
                        "GET",
                        f"/api/v1/files/{entry.id}/content",
                        1,
                        "response",
                        at,
                        "call",
                        0,
                        fill_up,
                    )
                )
            await put_tree(sdk, top, newer, agent.dir)
        for path, data in newer.items():
            tree.add(path, data)
        versions |= set(tree.files.values())

        def refused() -> bool:
            return any(
                i["kind"] == "disk-full" and i["path"].lstrip("/") == big.lstrip("/")
                for i in _issues(agent)
            )

        if not await fired(refused, 90.0):
            raise RuntimeError(f"the agent reported no disk-full issue for {big}")
        outcome.faults = 1
        only_whole_versions(findings, "local", local_snapshot(root), versions)
        if sha_of(root / big.lstrip("/")) != old_big:
            findings.fail(f"local: {big} is not the old version while the new one cannot fit")
        partial = root / PARTIAL_DIR
        left = sorted(p.name for p in partial.iterdir()) if partial.exists() else []
        if left:
            findings.fail(f"local: partial downloads left on the full disk: {left}")

        (w.disk / "filler").unlink()
        outcome.converge_s = await wait_converged(
            world, [agent], top, [root], tree, CONVERGE_TIMEOUT
        )
        outcome.resent = download_refetched(proxy, since, tree)
        await final_checks(findings, world, [agent], top, [root], tree, since_wall, rng)
        await fired(lambda: not _has(agent, "disk-full"), 30.0)
        if _has(agent, "disk-full"):
            findings.fail("the disk-full issue stayed after the download went through")
        if not findings.problems:
            await retire([agent], [root])
        return outcome


def free_bytes_of(world: World) -> int:
    return free_bytes(world.data / "uploads")


def _issues(agent: Agent) -> list[dict[str, Any]]:
    with ControlClient(agent.paths.socket, timeout=10) as control:
        found: list[dict[str, Any]] = control.call("issues.list")["issues"]
    return found


def _has(agent: Agent, kind: str) -> bool:
    return any(i["kind"] == kind for i in _issues(agent))


def scenarios(ci: bool = False) -> list[DiskFull]:
    return [DiskFull("server", ci), DiskFull("agent", ci)]
