"""``make bench``: run the registered benchmarks (all, or those named on the command line).

A benchmark is a module in ``bench/`` with a ``main(argv) -> int``; register it in
:data:`BENCHMARKS` with a one-line description.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

BENCHMARKS: dict[str, tuple[str, str]] = {
    "server": (
        "bench.server_transfer",
        "server layer: 1 GiB up/down over tus, 10,000 small uploads",
    ),
    "ops": (
        "bench.ops",
        "webhook latency and throughput, 1 GiB folder copy and push transfer",
    ),
    "engine-sync": (
        "bench.engine_sync",
        "sync engine vs rclone: 10,000 small files, 1 GiB up/down, latency, SIGKILL resume",
    ),
    "engine-big": (
        "bench.engine_big",
        "1 GiB through a running agent, up (moved in, written in place) and down, vs rclone",
    ),
    "engine-latency": (
        "bench.engine_latency",
        "sync engine: file appearing to committed, written in place, moved in, folder moved in",
    ),
    "engine-idle": (
        "bench.engine_idle",
        "sync engine with 100,000 files tracked: restart time, bytes hashed, idle CPU, RSS",
    ),
    "request-rate": (
        "bench.request_rate",
        "requests per second of one agent's credential at its busiest (10,000 small files)",
    ),
    "engine-small": (
        "bench.engine_small",
        "agent process vs rclone: 10,000 small files up, median and spread of 5 runs",
    ),
    "many-agents": (
        "bench.many_agents",
        "server under 200 SDK agents uploading small files while 1,000 long-polls are held",
    ),
    "scale-out": (
        "bench.scale_out",
        "1 node vs 2 behind nginx, SQLite + disk vs PostgreSQL + S3; long-poll fan-out",
    ),
    "packages": (
        "bench.packages",
        "bundle and .deb sizes; start-up of the bundled commands against the venv's",
    ),
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument("names", nargs="*", help="benchmarks to run (default: all)")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    args, rest = parser.parse_known_args(argv)
    if args.list:
        for name, (_module, text) in BENCHMARKS.items():
            print(f"{name:12} {text}")
        return 0
    unknown = [n for n in args.names if n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}; try --list")
    status = 0
    for name in args.names or list(BENCHMARKS):
        module_name, text = BENCHMARKS[name]
        print(f"== {name}: {text}", file=sys.stderr, flush=True)
        module = importlib.import_module(module_name)
        status = max(status, int(module.main(rest)))
    return status


if __name__ == "__main__":
    sys.exit(main())
