"""``make package``: the PyInstaller bundles and the Debian packages, in ``dist/``.

A step is skipped while its outputs are newer than every file they are built from,
so ``make test``, which tests the packages, builds them once and reuses them.

    python -m tools.package            # what is out of date
    python -m tools.package --force    # everything again
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DIST = ROOT / "dist"
PRODUCT = ("dropline", "sdk", "sync", "agent", "ui", "server", "pyproject.toml")


@dataclass(frozen=True)
class Step:
    name: str
    sources: tuple[str, ...]  # files and folders, relative to the repository
    stamp: str  # written into dist/ when the step succeeds
    run: Callable[[Path], object]


def _bundles(dist: Path) -> object:
    from tools import bundles

    return bundles.build(dist)


def _debs(dist: Path) -> object:
    from tools import debs

    return debs.build(dist)


STEPS = (
    Step("bundles", (*PRODUCT, "packaging/pyinstaller", "tools/bundles.py"), ".bundles", _bundles),
    Step(
        "debs",
        (*PRODUCT, "packaging", "assets", "tools/debs.py", "tools/elf.py", "tools/bundles.py"),
        ".debs",
        _debs,
    ),
)


def newest_source(sources: Iterable[str]) -> float:
    newest = 0.0
    for name in sources:
        path = ROOT / name
        files = [path] if path.is_file() else path.rglob("*")
        for f in files:
            if f.is_file() and "__pycache__" not in f.parts:
                newest = max(newest, f.stat().st_mtime)
    return newest


def out_of_date(step: Step, dist: Path) -> bool:
    stamp = dist / step.stamp
    return not stamp.exists() or stamp.stat().st_mtime < newest_source(step.sources)


def ensure_built(dist: Path = DIST, force: bool = False) -> Path:
    """Build what is out of date; returns ``dist``."""
    dist.mkdir(exist_ok=True)
    rebuilt = False
    for step in STEPS:
        stamp = dist / step.stamp
        if force or rebuilt or out_of_date(step, dist):
            stamp.unlink(missing_ok=True)
            print(f"package: building {step.name} ...", file=sys.stderr, flush=True)
            started = time.monotonic()
            step.run(dist)
            stamp.touch()
            print(
                f"package: {step.name} built in {time.monotonic() - started:.0f} s",
                file=sys.stderr,
                flush=True,
            )
            rebuilt = True
        else:
            print(f"package: {step.name} up to date", file=sys.stderr)
    return dist


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.package",
        description="Build the Dropline bundles and Debian packages into dist/.",
    )
    parser.add_argument("--force", action="store_true", help="rebuild even what is up to date")
    args = parser.parse_args(argv)
    ensure_built(DIST, force=args.force)
    return 0


if __name__ == "__main__":
    sys.exit(main())
