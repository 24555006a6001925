"""What the .deb build reads from and fixes in the bundles' ELF files: the libraries they
need, the newest C library symbol version they ask for, and their RUNPATH entries."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterable
from pathlib import Path

_GLIBC_VERSION = re.compile(rb"GLIBC_(2\.\d+)\x00")
_NEEDED = re.compile(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]")


class ElfError(Exception):
    """An ELF file cannot be read or fixed; the message names it."""


def is_elf(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(4) == b"\x7fELF"


def needed(paths: Iterable[Path]) -> set[str]:
    """Every DT_NEEDED entry of ``paths``, read by one ``readelf`` run (binutils)."""
    try:
        result = subprocess.run(
            ["readelf", "--dynamic", "--wide", *map(str, paths)],
            capture_output=True,
            text=True,
            check=False,
        )
    except FileNotFoundError:
        raise ElfError("readelf is missing: apt-get install binutils") from None
    return set(_NEEDED.findall(result.stdout))


def glibc_floor(paths: Iterable[Path], default: str = "2.17") -> str:
    """The newest ``GLIBC_2.x`` symbol version any of ``paths`` asks for: the oldest C
    library they run on."""
    found = (v.decode() for p in paths for v in _GLIBC_VERSION.findall(p.read_bytes()))
    return max(found, key=lambda v: tuple(int(n) for n in v.split(".")), default=default)


def drop_runpath(path: Path) -> bool:
    """Remove DT_RPATH and DT_RUNPATH from an ELF file in place (Debian's ``chrpath``);
    True if there was one.

    The bundled interpreter and its extension modules carry the build machine's library
    path (``/root/.pyenv/.../lib``); on a target machine that path would be searched
    first, so whoever controls it there could inject a library.
    """
    try:
        listed = subprocess.run(["chrpath", "-l", str(path)], capture_output=True, text=True)
    except FileNotFoundError:
        raise ElfError("chrpath is missing: apt-get install chrpath") from None
    if listed.returncode != 0:  # 2: no rpath or runpath tag
        return False
    deleted = subprocess.run(["chrpath", "-d", str(path)], capture_output=True, text=True)
    if deleted.returncode != 0:
        raise ElfError(f"{path}: chrpath -d failed: {deleted.stderr.strip()}")
    return True


__all__ = ["ElfError", "drop_runpath", "glibc_floor", "is_elf", "needed"]
