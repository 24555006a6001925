"""What the scenarios share: putting a tree on the server, a kill at a proxy rule's
moment, waiting until everything agrees, and the checks every trial ends with."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import shutil
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

from dropline.sdk.batch import BatchItem, upload_batch
from dropline.sdk.client import DroplineClient
from dropline.sdk.resumable import upload_file
from tests.faults.invariants import (
    Findings,
    converged,
    downloads_match,
    remote_files,
    server_storage,
    sqlite_ok,
    swept,
)
from tests.faults.proxy import FaultProxy
from tests.faults.trees import TUS_ABOVE, Tree, local_files
from tests.faults.world import Agent, World

UPLOADS = "/api/v1/uploads"
TRACE = bool(os.environ.get("FAULTS_TRACE"))  # say what a slow convergence waits for


def killer(pid: Callable[[], int], delay: float = 0.0) -> Callable[[], None]:
    """A proxy callback that sends SIGKILL to ``pid()`` now or ``delay`` seconds later."""

    def kill(target: int) -> None:
        if target <= 0:
            return  # never 0 or -1: those would signal this whole process group
        with contextlib.suppress(ProcessLookupError):
            os.kill(target, signal.SIGKILL)

    def fire() -> None:
        # The process running now: a late timer must not kill the one started after it.
        target = pid()
        if delay <= 0:
            kill(target)
        else:
            threading.Timer(delay, kill, (target,)).start()

    return fire


async def put_tree(sdk: DroplineClient, top: str, files: dict[str, bytes], tmp: Path) -> None:
    """Upload ``files`` under ``top`` straight to the server (no agent, no fault)."""
    small = [BatchItem(top + p, data) for p, data in files.items() if len(data) <= TUS_ABOVE]
    for outcome in await upload_batch(sdk, small):
        if isinstance(outcome, Exception):
            raise outcome
    for path, data in files.items():
        if len(data) > TUS_ABOVE:
            staged = tmp / "staged.bin"
            staged.write_bytes(data)
            await upload_file(sdk, staged, top + path)
            staged.unlink()


async def wait_converged(
    world: World, agents: list[Agent], top: str, roots: list[Path], tree: Tree, timeout: float
) -> float:
    """Seconds until every agent is idle and the server and every folder hold ``tree``."""
    started = time.monotonic()
    want = tree.expected()
    waiting_for = "the agents"
    async with world.sdk() as sdk:
        while True:
            busy = [a.name for a in agents if not a.idle()]
            if busy:
                waiting_for = f"agent(s) {busy} to be idle ({_states(agents)})"
            else:
                remote = await remote_files(sdk, top)
                local_ok = [root for root in roots if not _local_matches(root, tree)]
                if remote == want and not local_ok:
                    return time.monotonic() - started
                waiting_for = _difference(remote, want) if remote != want else f"{local_ok}"
            elapsed = time.monotonic() - started
            if elapsed > timeout:
                raise TimeoutError(f"not converged within {timeout:.0f} s: {waiting_for}")
            if TRACE and int(elapsed * 4) % 20 == 0:  # every 5 s
                print(f"    {elapsed:5.1f} s: waiting for {waiting_for}", flush=True)
            for agent in agents:
                if not agent.alive():
                    code = agent.proc.returncode if agent.proc else None
                    raise RuntimeError(f"agent {agent.name} died (exit {code})")
            await asyncio.sleep(0.25)


def _states(agents: list[Agent]) -> str:
    out = []
    for agent in agents:
        try:
            status = agent.status()
        except Exception as exc:  # a dead or busy agent is what this message reports
            out.append(f"{agent.name}: {type(exc).__name__}")
            continue
        folders = [(f["state"], f["pending"]) for f in status["folders"]]
        out.append(f"{agent.name}: {status['state']} {folders}")
    return "; ".join(out)


def _difference(got: dict[str, str | None], want: dict[str, str | None]) -> str:
    missing = sorted(set(want) - set(got))
    extra = sorted(set(got) - set(want))
    wrong = sorted(p for p in set(got) & set(want) if got[p] != want[p])
    return f"server missing {missing[:3]}, extra {extra[:3]}, different {wrong[:3]}"


def _local_matches(root: Path, tree: Tree) -> bool:
    return local_files(root) == tree.files


async def final_checks(
    findings: Findings,
    world: World,
    agents: list[Agent],
    top: str,
    roots: list[Path],
    tree: Tree,
    since: float,
    rng: random.Random,
) -> None:
    async with world.sdk() as sdk:
        await converged(findings, sdk, top, tree, roots)
        await downloads_match(findings, sdk, top, tree, rng)
    for agent in agents:
        sqlite_ok(findings, agent.journal)
    server_storage(findings, world.data, since)
    swept(findings, world.data, world.server.env, since)


def upload_resent(proxy: FaultProxy, since: float, tree: Tree) -> int:
    """Bytes that went up again: tus bytes past the large files' sizes, and the bodies
    of batch requests that got no success answer (cut, or answered to a dead agent)."""
    tus = proxy.body_bytes("PATCH", UPLOADS + "/", since)
    tus += sum(e.body for e in proxy.seen("POST", UPLOADS, since) if e.path == UPLOADS)
    batches = [e for e in proxy.seen("POST", UPLOADS + "/batch", since)]
    failed = sum(e.body for e in batches if not 200 <= e.status < 300)
    return max(0, tus - tree.tus_bytes) + failed


def download_refetched(proxy: FaultProxy, since: float, tree: Tree) -> int:
    fetched = sum(
        e.answer for e in proxy.seen("GET", "/api/v1/files/", since) if e.path.endswith("/content")
    )
    return max(0, fetched - tree.total_bytes)


async def fired(rule_fired: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if rule_fired():
            return True
        await asyncio.sleep(0.02)
    return False


async def retire(agents: list[Agent], roots: list[Path]) -> None:
    """A passing trial's folders leave their agents, then the disk (never the other way
    round: an agent would take the removal for the user's and pass it on)."""
    for agent in agents:
        agent.configure([])
    for agent, root in zip(agents, roots, strict=True):
        for _ in range(200):
            if not agent.status()["folders"]:
                break
            await asyncio.sleep(0.05)
        else:
            raise RuntimeError("an agent kept the trial's folder after its config dropped it")
        shutil.rmtree(root, ignore_errors=True)
