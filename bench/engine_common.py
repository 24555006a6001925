"""What the engine benchmarks share: a server child process with a key, an engine on a
folder, an rclone WebDAV peer, process CPU and memory readings, and writing the
"Engine" section of ``docs/performance.md``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

from bench.server_transfer import Server, create_key
from dropline.sdk.breaker import CircuitBreaker
from dropline.sdk.client import ApiKeyCredentials, DroplineClient, RetryPolicy
from dropline.sync.engine import Engine
from dropline.sync.types import EngineSettings, FolderSpec, State

ROOT = Path(__file__).resolve().parent.parent
PERFORMANCE_DOC = ROOT / "docs" / "performance.md"
MIB = 1024 * 1024
GIB = 1024 * MIB


@contextlib.contextmanager
def server(tmp: Path) -> Iterator[tuple[str, str, Server]]:
    data = tmp / "server-data"
    key = create_key(data)
    srv = Server(data)
    try:
        yield srv.url, key, srv
    finally:
        # Long-polls the server still holds end by their own timeout (up to a minute).
        srv.proc.terminate()
        try:
            srv.proc.wait(timeout=90)
        except subprocess.TimeoutExpired:
            srv.proc.kill()
        srv.stop()


def client(url: str, key: str) -> DroplineClient:
    return DroplineClient(
        url,
        ApiKeyCredentials(key),
        retry=RetryPolicy(attempts=4, initial=0.1, maximum=1.0),
        breaker=CircuitBreaker(failure_threshold=5, reset_timeout=1.0),
    )


@contextlib.asynccontextmanager
async def engine(
    home: Path,
    url: str,
    key: str,
    folders: list[FolderSpec],
    settings: EngineSettings | None = None,
) -> AsyncIterator[Engine]:
    eng = Engine(home, lambda: client(url, key), folders, settings or EngineSettings())
    await eng.start()
    try:
        yield eng
    finally:
        await eng.stop()


async def until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"bench: {what} did not happen within {timeout:.0f} s")
        await asyncio.sleep(0.02)


def idle(eng: Engine) -> bool:
    status = eng.status()
    return all(f.state is State.IDLE and f.pending == 0 for f in status.folders)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RcloneWebdav:
    """``rclone serve webdav`` on loopback, and ``rclone copy`` to and from it."""

    def __init__(self, directory: Path) -> None:
        self.exe = shutil.which("rclone")
        if self.exe is None:
            raise SystemExit("bench: rclone is missing (Debian: apt-get install rclone)")
        directory.mkdir(parents=True, exist_ok=True)
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.proc = subprocess.Popen(
            [self.exe, "serve", "webdav", str(directory), "--addr", f"127.0.0.1:{port}"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                return
            time.sleep(0.05)
        raise SystemExit("bench: rclone serve webdav did not start")

    def copy(self, src: str, dst: str) -> float:
        """Seconds for one ``rclone copy`` (``peer:`` names the WebDAV side)."""
        env = {
            **os.environ,
            "RCLONE_CONFIG_PEER_TYPE": "webdav",
            "RCLONE_CONFIG_PEER_URL": self.url,
        }
        started = time.monotonic()
        subprocess.run(
            [self.exe, "copy", src, dst, "--transfers", "4", "--checkers", "8"],
            check=True,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        return time.monotonic() - started

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=20)


def process_cpu(pid: int | None = None) -> float:
    """User+system CPU seconds of a process (this one by default)."""
    fields = Path(f"/proc/{pid or 'self'}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def process_status(field: str) -> int:
    """A numeric field of /proc/self/status (kB for memory fields)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def write_section(name: str, text: str) -> None:
    """Replace (or append) the block between this benchmark's markers."""
    start, end = f"<!-- bench:{name}:start -->", f"<!-- bench:{name}:end -->"
    doc = PERFORMANCE_DOC.read_text(encoding="utf-8") if PERFORMANCE_DOC.exists() else ""
    block = f"{start}\n{text.rstrip()}\n{end}"
    if start in doc and end in doc:
        before, rest = doc.split(start, 1)
        doc = before + block + rest.split(end, 1)[1]
    else:
        doc = doc.rstrip("\n") + "\n\n" + block + "\n"
    PERFORMANCE_DOC.write_text(doc, encoding="utf-8")


def load_average() -> str:
    return f"{os.getloadavg()[0]:.2f}"
