"""What the .deb build reads from and fixes in the bundles' ELF files: the libraries they
need, the newest C library symbol version they ask for, and their RUNPATH entries."""

from __future__ import annotations

import re
import struct
import subprocess
from collections.abc import Iterable
from pathlib import Path

_GLIBC_VERSION = re.compile(rb"GLIBC_(2\.\d+)\x00")
_NEEDED = re.compile(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]")
_PT_DYNAMIC = 2
_DT_NULL, _DT_RPATH, _DT_RUNPATH = 0, 15, 29


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
    """Remove DT_RPATH and DT_RUNPATH from a 64-bit little-endian ELF file in place, as
    ``chrpath -d`` does; True if there was one.

    The bundled interpreter and its extension modules carry the build machine's library
    path (``/root/.pyenv/.../lib``); on a target machine that path would be searched
    first, so whoever controls it there could inject a library.
    """
    data = bytearray(path.read_bytes())
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise ElfError(f"{path}: not a 64-bit little-endian ELF file")
    (phoff,) = struct.unpack_from("<Q", data, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    for i in range(phnum):
        p_type, _flags, p_offset, _vaddr, _paddr, p_filesz = struct.unpack_from(
            "<IIQQQQ", data, phoff + i * phentsize
        )
        if p_type == _PT_DYNAMIC:
            break
    else:
        return False
    entries = [struct.unpack_from("<qQ", data, p_offset + j * 16) for j in range(p_filesz // 16)]
    end = next((j for j, (tag, _) in enumerate(entries) if tag == _DT_NULL), len(entries))
    kept = [e for e in entries[:end] if e[0] not in (_DT_RPATH, _DT_RUNPATH)]
    if len(kept) == end:
        return False
    # The loader stops at the first DT_NULL: the entries after the removed ones move up
    # and the freed slots at the end become DT_NULL.
    kept += [(_DT_NULL, 0)] * (len(entries) - len(kept))
    for j, (tag, value) in enumerate(kept):
        struct.pack_into("<qQ", data, p_offset + j * 16, tag, value)
    path.write_bytes(bytes(data))
    return True


__all__ = ["ElfError", "drop_runpath", "glibc_floor", "is_elf", "needed"]
