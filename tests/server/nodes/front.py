"""Debian's nginx running docs/nginx-nodes.conf on loopback in front of several nodes, with
only the listen port, the nodes' addresses and the log paths swapped; stopped by its PID."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
SAMPLE = ROOT / "docs" / "nginx-nodes.conf"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
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


def main_config(prefix: Path) -> str:
    """What /etc/nginx/nginx.conf would give: an http block that includes the sample.
    One worker, so round robin takes the nodes strictly in turn."""
    kinds = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    temp = " ".join(f"{kind}_temp_path {prefix / kind};" for kind in kinds)
    # As root, workers would run as nobody, who cannot enter pytest's private tmp folder.
    user = "user root;" if os.geteuid() == 0 else ""
    return (
        f"{user}\nworker_processes 1;\npid {prefix / 'nginx.pid'};\n"
        f"error_log {prefix / 'error.log'};\nevents {{ worker_connections 256; }}\n"
        f"http {{ {temp} include {prefix / 'dropline-nodes.conf'}; }}\n"
    )


@contextlib.contextmanager
def running_nginx(prefix: Path, node_ports: Sequence[int]) -> Iterator[str]:
    """nginx in front of ``node_ports``; yields its URL."""
    prefix.mkdir(parents=True, exist_ok=True)
    listen = free_port()
    (prefix / "dropline-nodes.conf").write_text(config_from_sample(prefix, listen, node_ports))
    (prefix / "nginx.conf").write_text(main_config(prefix))
    log = prefix / "error.log"
    conf = prefix / "nginx.conf"
    nginx = subprocess.Popen(
        [NGINX, "-p", str(prefix), "-c", str(conf), "-e", str(log), "-g", "daemon off;"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            assert nginx.poll() is None, f"nginx did not start: {log.read_text()}"
            try:
                socket.create_connection(("127.0.0.1", listen), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "nginx never accepted a connection"
                time.sleep(0.05)
        yield f"http://127.0.0.1:{listen}"
    finally:
        os.kill(nginx.pid, signal.SIGQUIT)  # graceful: the master stops its worker
        try:
            nginx.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(nginx.pid, signal.SIGKILL)
            nginx.wait(timeout=10)
