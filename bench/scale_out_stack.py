"""The shapes the scale-out benchmark measures, each a real stack on loopback: one node on
SQLite + disk, or nodes on PostgreSQL + S3 (moto's server) with or without Debian's nginx
in front; and CPU seconds per process tree, so a run can say which process spent them.

The parts are the test suite's own (tests/support: the throwaway PostgreSQL cluster,
moto_server, ``dropline-server serve`` child processes, nginx running the nodes' sample).
"""

from __future__ import annotations

import contextlib
import os
import re
import resource
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from bench.server_transfer import create_key
from tests.server.nodes.front import SAMPLE, free_port, swap
from tests.support import nginx
from tests.support.live import ServerProcess
from tests.support.nodes import migrated_with_key, running_nodes
from tests.support.postgres import PostgresCluster
from tests.support.s3 import MotoServer

SCOPES = ("files:read", "files:write")
# Set far above what the benchmark sends, so it measures the server and not its limits
# (the limiter still does its work on every request: on PostgreSQL a shared bucket row).
LIMITS = {
    "DROPLINE_RATE_LIMIT_PER_CREDENTIAL": "1000000/second",
    "DROPLINE_RATE_LIMIT_PER_ENDPOINT": "1000000/second",
    "DROPLINE_RATE_LIMIT_PER_IP": "1000000/second",
}
SAMPLE_NODE_LINE = r"(?m)^\s*server 10\.0\.0\.1\d:8600 .*\n"


@dataclass
class Shape:
    """Where the clients of one shape send their requests, and the processes behind it."""

    label: str
    url: str
    key: str
    nodes: list[ServerProcess]
    database_url: str
    pg_pid: int | None = None
    moto_pid: int | None = None
    extra_pids: dict[str, int] = field(default_factory=dict)

    @property
    def node_urls(self) -> list[str]:
        return [node.url for node in self.nodes]

    def roles(self) -> dict[str, list[int]]:
        """Process trees by role: what :func:`cpu_by_role` reads."""
        found = {"nodes": [n.proc.pid for n in self.nodes if n.proc is not None]}
        if self.pg_pid is not None:
            found["PostgreSQL"] = [self.pg_pid]
        if self.moto_pid is not None:
            found["S3 (moto)"] = [self.moto_pid]
        for role, pid in self.extra_pids.items():
            found[role] = [pid]
        return found


def raise_fd_limit() -> None:
    """1,000 long-polls need more descriptors than the usual soft limit; children inherit."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


# -- CPU accounting -----------------------------------------------------------------


def _stat(pid: int) -> list[str]:
    # Fields after the command name (which may hold spaces): state is [0], ppid [1].
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def _children() -> dict[int, list[int]]:
    found: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError, IndexError):
                found.setdefault(int(_stat(int(entry))[1]), []).append(int(entry))
    return found


def tree_cpu(root: int, children: dict[int, list[int]] | None = None) -> float:
    """CPU seconds of ``root`` and its descendants, the reaped ones included (PostgreSQL
    ends a backend with its connection; its time then shows in the postmaster's cutime)."""
    children = _children() if children is None else children
    ticks = os.sysconf("SC_CLK_TCK")
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        with contextlib.suppress(OSError):
            fields = _stat(pid)
            total += sum(int(f) for f in fields[11:15])  # utime stime cutime cstime
        todo += children.get(pid, [])
    return total / ticks


def self_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def cpu_by_role(shape: Shape) -> dict[str, float]:
    children = _children()
    found = {
        role: sum(tree_cpu(pid, children) for pid in pids) for role, pids in shape.roles().items()
    }
    found["client"] = self_cpu()
    return found


def cpu_spent(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {role: after[role] - before.get(role, 0.0) for role in after}


# -- the shapes ------------------------------------------------------------------------


@contextlib.contextmanager
def sqlite_node(base: Path) -> Iterator[Shape]:
    """One node on its embedded defaults: SQLite and blobs in its data dir."""
    data_dir = base / "sqlite-node"
    key = create_key(data_dir)
    node = ServerProcess(data_dir, extra_env=LIMITS)
    try:
        node.start(timeout=60)
        url = f"sqlite:///{data_dir / 'dropline.db'}"
        yield Shape("1 node, SQLite + disk, direct", node.url, key, [node], url)
    finally:
        node.stop()


@contextlib.contextmanager
def postgres_nodes(
    base: Path, pg: PostgresCluster, moto: MotoServer, count: int
) -> Iterator[Shape]:
    """``count`` nodes on a new database and a new bucket; the shape's URL is node 1's."""
    name = pg.create_database()
    database_url = pg.url(name)
    key = migrated_with_key(database_url, SCOPES)
    bucket = moto.new_bucket()
    home = base / f"pg-{count}-nodes"
    home.mkdir(parents=True)
    env = {**moto.env(bucket, home=home), **LIMITS, "DROPLINE_TRUSTED_PROXIES": "127.0.0.1/32"}
    assert moto.proc is not None
    try:
        with running_nodes(home, database_url, count, env) as nodes:
            yield Shape(
                f"{count} node{'s' if count > 1 else ''}, PostgreSQL + S3, direct",
                nodes[0].url,
                key,
                nodes,
                database_url,
                pg_pid=pg.pid,
                moto_pid=moto.proc.pid,
            )
    finally:
        empty_bucket(moto, bucket)
        pg.drop_database(name)


@contextlib.contextmanager
def behind_nginx(shape: Shape, prefix: Path) -> Iterator[Shape]:
    """The same nodes with Debian's nginx in front (docs/nginx-nodes.conf, round robin)."""
    prefix.mkdir(parents=True, exist_ok=True)
    listen = free_port()
    site = prefix / "dropline-nodes.conf"
    site.write_text(nginx_site(prefix, listen, [node.port for node in shape.nodes]))
    with nginx.running_nginx(prefix, site, listen):
        pid = next(p for p in _children().get(os.getpid(), []) if _comm(p) == "nginx")
        label = shape.label.replace("direct", "behind nginx")
        yield Shape(
            label,
            f"http://127.0.0.1:{listen}",
            shape.key,
            shape.nodes,
            shape.database_url,
            pg_pid=shape.pg_pid,
            moto_pid=shape.moto_pid,
            extra_pids={"nginx": pid},
        )


def nginx_site(prefix: Path, listen: int, node_ports: list[int]) -> str:
    """docs/nginx-nodes.conf with its three sample nodes replaced by ``node_ports`` (any
    number) and its listen port and logs swapped for ours."""
    conf = SAMPLE.read_text(encoding="utf-8")
    lines = re.findall(SAMPLE_NODE_LINE, conf)
    assert lines, f"no node lines in {SAMPLE.name}"
    ours = "".join(re.sub(r"10\.0\.0\.1\d:8600", f"127.0.0.1:{p}", lines[0]) for p in node_ports)
    conf = conf.replace("".join(lines), ours, 1)
    conf = swap(conf, r"listen 80;", f"listen 127.0.0.1:{listen};")
    conf = swap(conf, r"access_log \S+;", f"access_log {prefix / 'access.log'};")
    return swap(conf, r"error_log \S+;", f"error_log {prefix / 'error.log'};")


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def empty_bucket(moto: MotoServer, bucket: str) -> None:
    """moto keeps objects in its memory: give back a shape's gigabytes before the next."""
    s3 = moto.client()
    with contextlib.suppress(Exception):
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if keys:
                s3.delete_objects(Bucket=bucket, Delete={"Objects": keys})
        for upload in s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []):
            s3.abort_multipart_upload(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
