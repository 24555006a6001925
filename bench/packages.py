"""Package sizes and start-up times: the bundles and .deb files of ``make package``
against the same commands run from the virtual environment.

    python -m bench.run packages [--runs 5]

Writes its table into docs/performance.md between the ``bench:packages`` markers.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import date
from pathlib import Path

import httpx

from tools.package import DIST, ensure_built

ROOT = Path(__file__).resolve().parent.parent
PERFORMANCE_DOC = ROOT / "docs" / "performance.md"
START = "<!-- bench:packages:start -->"
END = "<!-- bench:packages:end -->"
VENV_BIN = Path(sys.executable).parent
COMMANDS = {
    "dropline-agent": "dropline",
    "dropline-tray": "dropline",
    "dropline-server": "dropline-server",
}
MIB = 1024 * 1024


def tree_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


def wall(cmd: Sequence[str | Path], runs: int) -> float:
    """Median wall time of ``cmd`` over ``runs`` runs, after one warm-up run."""
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    times = []
    for i in range(runs + 1):
        started = time.perf_counter()
        subprocess.run([str(c) for c in cmd], env=env, capture_output=True, check=True)
        if i:
            times.append(time.perf_counter() - started)
    return statistics.median(times)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def server_ready(command: Path, runs: int) -> float:
    """Median time from starting ``serve`` on a new data directory to ``/readyz`` 200."""
    times = []
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as data:
            port = free_port()
            started = time.perf_counter()
            proc = subprocess.Popen(
                [command, "serve", "--data-dir", data, "--host", "127.0.0.1", "--port", str(port)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            try:
                while True:
                    try:
                        if httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    if proc.poll() is not None or time.perf_counter() - started > 60:
                        raise SystemExit(f"bench packages: {command} serve did not get ready")
                    time.sleep(0.02)
                times.append(time.perf_counter() - started)
            finally:
                proc.terminate()
                proc.wait(30)
    return statistics.median(times)


def table(runs: int) -> str:
    dist = ensure_built(DIST)
    lines = [
        f"Measured {date.today().isoformat()} on {os.cpu_count()} cores (load average "
        f"{os.getloadavg()[0]:.2f} at the start), Python {sys.version.split()[0]}; "
        f"start-up times are medians of {runs} runs after one warm-up.",
        "",
        "| Package | Size | Installed |",
        "|---|---:|---:|",
    ]
    for deb in sorted(dist.glob("*.deb")):
        field = subprocess.run(
            ["dpkg-deb", "--field", str(deb), "Installed-Size"],
            capture_output=True,
            text=True,
            check=True,
        )
        installed_mib = int(field.stdout.strip()) / 1024
        lines.append(
            f"| `{deb.name}` | {deb.stat().st_size / MIB:.1f} MiB | {installed_mib:.0f} MiB |"
        )
    for bundle in ("dropline", "dropline-server"):
        lines.append(f"| bundle `dist/{bundle}/` |  | {tree_size(dist / bundle) / MIB:.0f} MiB |")
    lines += ["", "| Start-up | Bundle (s) | Virtual environment (s) |", "|---|---:|---:|"]
    for command, bundle in COMMANDS.items():
        bundled = wall([dist / bundle / command, "--version"], runs)
        venv = wall([VENV_BIN / command, "--version"], runs)
        lines.append(f"| `{command} --version` | {bundled:.2f} | {venv:.2f} |")
    bundled = server_ready(dist / "dropline-server" / "dropline-server", runs)
    venv = server_ready(VENV_BIN / "dropline-server", runs)
    lines.append(f"| `dropline-server serve` to `/readyz` 200 | {bundled:.2f} | {venv:.2f} |")
    return "\n".join(lines)


def write_doc(body: str) -> None:
    text = PERFORMANCE_DOC.read_text(encoding="utf-8")
    block = f"{START}\n## Packages\n\n{body}\n{END}"
    if START in text:
        head, rest = text.split(START, 1)
        text = head + block + rest.split(END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    PERFORMANCE_DOC.write_text(text, encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench packages", description=__doc__)
    parser.add_argument("--runs", type=int, default=5, help="runs per start-up figure (default 5)")
    args = parser.parse_args(argv)
    body = table(args.runs)
    print(body)
    write_doc(body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
