"""Names for conflict copies: ``name (conflicted copy HOST YYYY-MM-DD HHMMSS).ext``."""

from __future__ import annotations

import re
import socket
from collections.abc import Callable
from datetime import datetime

_MARK = re.compile(r" \(conflicted copy [^()]* \d{4}-\d{2}-\d{2} \d{6}\)(?: \d+)?(?=\.[^.]*$|$)")


def host_name(configured: str | None = None) -> str:
    """The machine's short name, safe inside a file name."""
    name = configured or socket.gethostname().split(".")[0] or "unknown"
    return re.sub(r"[\\/:*?\"<>|()\x00-\x1f]", "-", name).strip() or "unknown"


def _split(name: str) -> tuple[str, str]:
    # ".bashrc" has no extension; "archive.tar.gz" keeps only ".gz" so the copy still opens.
    dot = name.rfind(".")
    if dot <= 0:
        return name, ""
    return name[:dot], name[dot:]


def conflict_name(name: str, host: str, when: datetime, n: int = 1) -> str:
    stem, ext = _split(name)
    suffix = f" {n}" if n > 1 else ""
    return f"{stem} (conflicted copy {host} {when:%Y-%m-%d %H%M%S}){suffix}{ext}"


def conflict_path(
    rel: str, host: str, when: datetime, taken: Callable[[str], bool] = lambda _p: False
) -> str:
    """The conflict copy's relative path beside ``rel``, numbered if that name is taken."""
    parent, _, name = rel.rpartition("/")
    n = 1
    while True:
        candidate = conflict_name(name, host, when, n)
        path = f"{parent}/{candidate}" if parent else candidate
        if not taken(path):
            return path
        n += 1


def is_conflict_copy(name: str) -> bool:
    return bool(_MARK.search(name))
