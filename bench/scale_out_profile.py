"""Where a node's CPU goes: py-spy sampling the node's GIL-holding threads, each sample
put down to the nearest library or Dropline frame (standard-library frames count for
their caller), so a profile reads as "database driver, SQLAlchemy, S3 client, HTTP
stack, Dropline's own code"."""

from __future__ import annotations

import collections
import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from bench.server_transfer import start_profile, stop_profile

# Checked from the innermost frame outwards: the first frame that matches names the sample.
DRIVER_CALLS = ("do_execute", "do_executemany", "do_execute_no_params", "do_commit", "_commit")
CATEGORIES: tuple[tuple[str, str], ...] = (
    ("psycopg/", "database driver: SQL sent and rows read (psycopg, sqlite3)"),
    ("sqlalchemy/", "SQLAlchemy: building statements, rows, the connection pool"),
    ("botocore/", "S3 client (boto3, botocore, urllib3)"),
    ("boto3/", "S3 client (boto3, botocore, urllib3)"),
    ("s3transfer/", "S3 client (boto3, botocore, urllib3)"),
    ("urllib3/", "S3 client (boto3, botocore, urllib3)"),
    ("cryptography/", "encryption at rest (cryptography)"),
    ("uvicorn/", "HTTP stack (uvicorn, Starlette, FastAPI, pydantic, anyio)"),
    ("h11/", "HTTP stack (uvicorn, Starlette, FastAPI, pydantic, anyio)"),
    ("httptools/", "HTTP stack (uvicorn, Starlette, FastAPI, pydantic, anyio)"),
    ("starlette/", "HTTP stack (uvicorn, Starlette, FastAPI, pydantic, anyio)"),
    ("fastapi/", "HTTP stack (uvicorn, Starlette, FastAPI, pydantic, anyio)"),
    ("pydantic", "HTTP stack (uvicorn, Starlette, FastAPI, pydantic, anyio)"),
    ("anyio/", "HTTP stack (uvicorn, Starlette, FastAPI, pydantic, anyio)"),
    ("prometheus_client/", "metrics (prometheus_client)"),
    ("logging/", "logging"),
    ("dropline/", "Dropline's own code, with the C calls it makes (hashing, file I/O)"),
)
IDLE = ("select", "epoll", "_worker (concurrent", "wait (threading", "poll")


@dataclass
class Breakdown:
    samples: int = 0
    shares: list[tuple[str, float]] = field(default_factory=list)


def category(stack: str) -> str:
    frames = stack.split(";")
    for frame in reversed(frames):
        if "sqlalchemy/" in frame and frame.split(" (", 1)[0] in DRIVER_CALLS:
            return CATEGORIES[0][1]  # SQLAlchemy's call into the driver: time in the driver
        for marker, name in CATEGORIES:
            if marker in frame:
                return name
    return "other (standard library, interpreter)"


def summarize(raw: Path) -> Breakdown:
    counts: collections.Counter[str] = collections.Counter()
    if not raw.exists():
        return Breakdown()
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        if any(idle in stack.rsplit(";", 1)[-1] for idle in IDLE):
            continue
        counts[category(stack)] += int(n)
    total = sum(counts.values())
    shares = [(name, 100.0 * n / total) for name, n in counts.most_common()] if total else []
    return Breakdown(total, shares)


@contextlib.contextmanager
def profiled(pid: int, raw: Path) -> Iterator[Breakdown]:
    """Profile ``pid`` for the block; the yielded breakdown is filled in at its end (empty
    when py-spy is not installed)."""
    found = Breakdown()
    profiler = start_profile(pid, raw)
    try:
        yield found
    finally:
        stop_profile(profiler)
        result = summarize(raw)
        found.samples, found.shares = result.samples, result.shares
