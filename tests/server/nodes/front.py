"""Debian's nginx running docs/nginx-nodes.conf on loopback in front of several nodes, with
only the listen port, the nodes' addresses and the log paths swapped; stopped by its PID."""

from __future__ import annotations

import contextlib
import re
import socket
from collections.abc import Iterator, Sequence
from pathlib import Path

from tests.support import nginx

ROOT = Path(__file__).resolve().parents[3]
SAMPLE = ROOT / "docs" / "nginx-nodes.conf"
NODE_LINE = r"server 10\.0\.0\.1\d:8600 "


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def swap(text: str, pattern: str, replacement: str, count: int = 1) -> str:
    """Replace what ``pattern`` matches, which must match exactly ``count`` times."""
    changed, found = re.subn(pattern, replacement, text)
    assert found == count, f"{pattern!r} matched {found} times in {SAMPLE.name}, not {count}"
    return changed


def config_from_sample(prefix: Path, listen: int, node_ports: Sequence[int]) -> str:
    conf = SAMPLE.read_text(encoding="utf-8")
    assert len(re.findall(NODE_LINE, conf)) == len(node_ports), "one sample line per node"
    for port in node_ports:
        conf = re.sub(NODE_LINE, f"server 127.0.0.1:{port} ", conf, count=1)
    conf = swap(conf, r"listen 80;", f"listen 127.0.0.1:{listen};")
    conf = swap(conf, r"access_log \S+;", f"access_log {prefix / 'access.log'};")
    conf = swap(conf, r"error_log \S+;", f"error_log {prefix / 'error.log'};")
    return conf


@contextlib.contextmanager
def running_nginx(prefix: Path, node_ports: Sequence[int]) -> Iterator[str]:
    """nginx in front of ``node_ports``; yields its URL."""
    prefix.mkdir(parents=True, exist_ok=True)
    listen = free_port()
    site = prefix / "dropline-nodes.conf"
    site.write_text(config_from_sample(prefix, listen, node_ports))
    with nginx.running_nginx(prefix, site, listen):
        yield f"http://127.0.0.1:{listen}"
