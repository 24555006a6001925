"""``make package`` step "bundles": the PyInstaller one-folder bundles ``dist/dropline/``
(``dropline-agent`` and ``dropline-tray``) and ``dist/dropline-server/``, built from the
spec files in ``packaging/pyinstaller/``; work files and logs go under ``build/pyinstaller/``.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "packaging" / "pyinstaller"
WORK = ROOT / "build" / "pyinstaller"

# PyInstaller's lines worth showing while it works (it writes a few thousand), in words.
PROGRESS = (
    (re.compile(r"INFO: Analyzing .*/(\w+\.py)$"), "analysing the imports of {}"),
    (re.compile(r"INFO: Looking for dynamic libraries$"), "collecting shared libraries"),
    (re.compile(r"INFO: Building COLLECT COLLECT-\d+\.toc$"), "assembling the folder"),
)


@dataclass(frozen=True, slots=True)
class Bundle:
    name: str  # the folder in dist/ (the .deb files are built from it)
    spec: str
    executables: tuple[str, ...]


BUNDLES = (
    Bundle("dropline", "dropline.spec", ("dropline-agent", "dropline-tray")),
    Bundle("dropline-server", "dropline-server.spec", ("dropline-server",)),
)


def say(message: str) -> None:
    print(f"bundles: {message}", file=sys.stderr, flush=True)


def build(dist: Path) -> list[Path]:
    """Build every bundle into ``dist``; returns their folders.

    A failure ends the program with one line naming the bundle, PyInstaller's own
    reason and the log that holds the rest.
    """
    _check_tools()
    return [build_bundle(bundle, dist) for bundle in BUNDLES]


def _check_tools() -> None:
    if importlib.util.find_spec("PyInstaller") is None:
        raise SystemExit(
            "bundles: PyInstaller is not installed in this environment "
            "(make package installs it with the dev extra)"
        )
    # PyInstaller reads the libraries' dependencies with ldd and objdump (binutils).
    for tool in ("ldd", "objdump"):
        if shutil.which(tool) is None:
            raise SystemExit(f"bundles: {tool} is missing (apt-get install binutils libc-bin)")


def build_bundle(bundle: Bundle, dist: Path) -> Path:
    work = WORK / bundle.name
    staging = WORK / "out"
    log_path = WORK / f"{bundle.name}.log"
    work.mkdir(parents=True, exist_ok=True)
    say(f"{bundle.name}: PyInstaller {bundle.spec} (log: {_shown(log_path)})")
    started = time.monotonic()
    cmd = [
        sys.executable,
        "-m",
        "PyInstaller",
        "--noconfirm",
        "--distpath",
        str(staging),
        "--workpath",
        str(work),
        str(SPECS / bundle.spec),
    ]
    with (
        open(log_path, "w", encoding="utf-8") as log,
        subprocess.Popen(
            cmd,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
        ) as proc,
    ):
        assert proc.stdout is not None
        for line in proc.stdout:
            log.write(line)
            for pattern, words in PROGRESS:
                found = pattern.search(line.rstrip())
                if found:
                    say(f"{bundle.name}: {words.format(*found.groups())}")
        code = proc.wait()
    if code != 0:
        raise SystemExit(
            f"bundles: PyInstaller failed on {bundle.spec} (exit {code}): "
            f"{_reason(log_path)}; the whole log is {_shown(log_path)}"
        )
    # The finished bundle replaces the old one only now, so a failed build leaves
    # dist/ as it was.
    out = dist / bundle.name
    shutil.rmtree(out, ignore_errors=True)
    shutil.move(staging / bundle.name, out)
    missing = [e for e in bundle.executables if not (out / e).is_file()]
    if missing:
        raise SystemExit(f"bundles: {bundle.name} was built without {', '.join(missing)}")
    for library, needed_by in unresolved_libraries(log_path, out):
        say(
            f"{bundle.name}: warning: {library} (needed by {needed_by}) is not installed here, "
            "so the bundle goes without it and the target system must provide it"
        )
    say(
        f"{bundle.name}: {_shown(out)}/ in {time.monotonic() - started:.0f} s, "
        f"{_megabytes(out):.0f} MB"
    )
    return out


def unresolved_libraries(log_path: Path, out: Path) -> list[tuple[str, str]]:
    """Libraries PyInstaller could not find for a file that is in the finished bundle
    (those of the Qt plugins the spec leaves out do not matter)."""
    shipped = {f.name for f in out.rglob("*")}
    found = re.findall(
        r"Library not found: could not resolve '([^']+)', dependency of '([^']+)'",
        log_path.read_text(errors="replace"),
    )
    seen: dict[str, str] = {}
    for library, dependent in found:
        if Path(dependent).name in shipped:
            seen.setdefault(library, Path(dependent).name)
    return sorted(seen.items())


def _reason(log_path: Path) -> str:
    """PyInstaller's last error line, or the last line it wrote."""
    lines = [line.strip() for line in log_path.read_text(errors="replace").splitlines()]
    lines = [line for line in lines if line]
    for line in reversed(lines):
        if "ERROR" in line or re.match(r"\w+(Error|Exception)\b", line):
            return line
    return lines[-1] if lines else "no output"


def _megabytes(folder: Path) -> float:
    # Symbolic links inside the bundle point at files already counted.
    files = (f for f in folder.rglob("*") if f.is_file() and not f.is_symlink())
    return sum(f.stat().st_size for f in files) / 1e6


def _shown(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)
