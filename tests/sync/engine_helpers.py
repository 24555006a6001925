"""Helpers for the engine's integration tests: a client on the live server, an engine
on a temporary folder, and polling until the two sides agree."""

from __future__ import annotations

import asyncio
import hashlib
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

from dropline.sdk.breaker import CircuitBreaker
from dropline.sdk.client import ApiKeyCredentials, DroplineClient, RetryPolicy
from dropline.sdk.errors import NotFoundError
from dropline.sdk.models import Entry
from dropline.sync.engine import Engine
from dropline.sync.types import EngineSettings, FolderSpec, State
from tests.support.live import ServerProcess

REPO = Path(__file__).resolve().parents[2]

FAST = EngineSettings(stable_seconds=0.2, longpoll_timeout=1, hostname="testhost")
QUICK_RETRY = RetryPolicy(attempts=3, initial=0.05, maximum=0.2)

# What the ``start_engine`` fixture (tests/sync/conftest.py) gives a test.
StartEngine = Callable[..., AbstractAsyncContextManager[Engine]]


def client_for(url: str, key: str) -> DroplineClient:
    # A breaker that probes again after a second, so outage tests do not wait 30 s.
    breaker = CircuitBreaker(failure_threshold=5, reset_timeout=1.0)
    return DroplineClient(url, ApiKeyCredentials(key), retry=QUICK_RETRY, breaker=breaker)


@asynccontextmanager
async def running_engine(
    home: Path,
    url: str,
    key: str,
    folders: list[FolderSpec],
    settings: EngineSettings = FAST,
) -> AsyncIterator[Engine]:
    engine = Engine(home, lambda: client_for(url, key), folders, settings)
    await engine.start()
    try:
        yield engine
    finally:
        await engine.stop()


async def eventually(
    check: Callable[[], Awaitable[bool]] | Callable[[], bool], timeout: float = 30.0
) -> None:
    """Poll until ``check`` holds; fail with a clear message when it never does."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not reached within {timeout} s")
        await asyncio.sleep(0.05)


async def settled(engine: Engine, timeout: float = 30.0) -> None:
    """Until the engine has nothing left to do (idle in every folder)."""

    def idle() -> bool:
        status = engine.status()
        return all(f.state is State.IDLE and f.pending == 0 for f in status.folders)

    await asyncio.sleep(0.3)  # let watcher events reach the aggregator
    await eventually(idle, timeout)


async def remote_entry(client: DroplineClient, path: str) -> Entry | None:
    try:
        return await client.metadata(path)
    except NotFoundError:
        return None


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def remote_tree(client: DroplineClient, top: str = "/") -> dict[str, str | None]:
    """Every path under ``top`` with its SHA-256 (None for folders). A folder that goes
    while the tree is walked (an agent still moving things) starts the walk over."""
    while True:
        out: dict[str, str | None] = {}
        todo = [top]
        while todo:
            directory = todo.pop()
            try:
                listed = await client.list_folder(directory)
            except NotFoundError:
                if directory == top:
                    raise
                break
            for entry in listed:
                out[entry.path] = entry.sha256
                if entry.is_folder:
                    todo.append(entry.path)
        else:
            return out
        await asyncio.sleep(0.05)


def local_tree(root: Path) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if rel == ".dropline" or rel.startswith(".dropline/"):
            continue
        out["/" + rel] = None if path.is_dir() else sha(path.read_bytes())
    return out


def server_cli(data: Path, *args: str, password: bool = False) -> str:
    """``dropline-server ARGS --data-dir DATA``; its standard output."""
    env = {**os.environ, "DROPLINE_PASSWORD": "correct horse battery staple"} if password else None
    out = subprocess.run(
        [sys.executable, "-m", "dropline.server.cli", *args, "--data-dir", str(data)],
        check=True,
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
    )
    return out.stdout.strip()


def server_process(data: Path) -> tuple[ServerProcess, str]:
    """A server in its own process (no GIL shared with the engine) and an API key."""
    server_cli(data, "tenants", "create", "acme")
    server_cli(
        data, "users", "create", "--tenant", "acme", "--email", "a@example.com", password=True
    )
    key = server_cli(data, "api-keys", "create", "--tenant", "acme", "--user", "a@example.com")
    server = ServerProcess(data)
    server.start()
    return server, key
