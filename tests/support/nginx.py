"""Debian's nginx on loopback for tests: a main config that includes one site file, the
process started in the foreground, waited for on its port, and stopped by its PID."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


def main_config(prefix: Path, site: Path) -> str:
    """What /etc/nginx/nginx.conf would give: an http block that includes ``site``.
    One worker, so round robin takes upstream servers strictly in turn."""
    kinds = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    temp = " ".join(f"{kind}_temp_path {prefix / kind};" for kind in kinds)
    # As root, workers would run as nobody, who cannot enter pytest's private tmp folder.
    user = "user root;" if os.geteuid() == 0 else ""
    return (
        f"{user}\ndaemon off;\nworker_processes 1;\npid {prefix / 'nginx.pid'};\n"
        f"error_log {prefix / 'error.log'};\nevents {{ worker_connections 256; }}\n"
        f"http {{ {temp} include {site}; }}\n"
    )


@contextlib.contextmanager
def running_nginx(prefix: Path, site: Path, port: int) -> Iterator[None]:
    """nginx serving ``site`` (a file under ``prefix``) until it accepts on ``port``."""
    conf, log = prefix / "nginx.conf", prefix / "error.log"
    conf.write_text(main_config(prefix, site))
    nginx = subprocess.Popen(
        [NGINX, "-p", str(prefix), "-c", str(conf), "-e", str(log)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            assert nginx.poll() is None, f"nginx did not start: {log.read_text()}"
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "nginx never accepted a connection"
                time.sleep(0.05)
        yield
    finally:
        os.kill(nginx.pid, signal.SIGQUIT)  # graceful: the master stops its worker
        try:
            nginx.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(nginx.pid, signal.SIGKILL)
            nginx.wait(timeout=10)
