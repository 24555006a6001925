"""Walks a sync folder and says what differs from the journal's base.

An ``os.scandir`` walk yielding :class:`ScanResult`s for what is new, changed or gone.
A file whose size, mtime_ns and inode match the base is never read; a file or folder
that cannot be read becomes a result with an error and the walk goes on (and what
lies below an unreadable folder is not taken for deleted). The scanner does not know
the journal: it declares the :class:`BaseIndex` it needs and the folder plugs it in.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import logging
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from dropline.sdk.hashing import READ_SIZE
from dropline.sync import fs
from dropline.sync.ignore import IgnoreRules
from dropline.sync.records import Base, Local

log = logging.getLogger(__name__)


class BaseIndex(Protocol):
    def children(self, parent: str) -> Mapping[str, Base]: ...
    def get(self, path: str) -> Base | None: ...
    def descendants(self, path: str) -> Mapping[str, Base]: ...


@dataclass(frozen=True, slots=True)
class ScanResult:
    path: str
    local: Local | None  # None: nothing there any more (or, with ``error``, unknown)
    base: Base | None
    error: str | None = None

    @property
    def needs_hash(self) -> bool:
        return self.local is not None and not self.local.is_dir and self.local.sha256 is None


class FileBusyError(OSError):
    """Another program holds a lock on the file, or it changed while being read."""


def _local(st: fs.LocalStat, base: Base | None) -> Local | None:
    """The local state, carrying the base hash when the stat proves it unchanged;
    None when nothing differs from the base at all."""
    if base is not None and base.is_dir == st.is_dir:
        if st.is_dir:
            return None if base.inode == st.inode else Local(True, 0, st.mtime_ns, st.inode)
        if base.size == st.size and base.mtime_ns == st.mtime_ns and base.inode == st.inode:
            return None
    return Local(st.is_dir, st.size, st.mtime_ns, st.inode)


def _gone(path: str, base: Base, index: BaseIndex) -> Iterator[ScanResult]:
    yield ScanResult(path, None, base)
    if base.is_dir:
        for p, b in sorted(index.descendants(path).items()):
            yield ScanResult(p, None, b)


def walk(
    root: Path,
    index: BaseIndex,
    ignore: IgnoreRules,
    start: str = "",
    *,
    counter: Callable[[int], None] | None = None,
) -> Iterator[ScanResult]:
    """Everything under ``start`` (a folder) that differs from the base. ``counter``
    is told how many entries each directory held (for progress and benchmarks)."""
    stack = [start]
    while stack:
        directory = stack.pop()
        known = dict(index.children(directory))
        try:
            entries = list(fs.list_dir(fs.abspath(root, directory)))
        except FileNotFoundError:
            continue  # vanished under us: its parent's listing reports it
        except OSError as exc:
            yield ScanResult(directory, None, index.get(directory), exc.strerror or str(exc))
            continue
        if counter is not None:
            counter(len(entries))
        for entry in entries:
            rel = fs.join(directory, entry.name)
            base = known.pop(entry.name, None)
            if entry.error is not None:
                yield ScanResult(rel, None, base, entry.error)
                continue
            if entry.stat is None:
                log.debug("not a regular file or folder, left alone: %s", rel)
                continue
            if ignore.ignored(rel, entry.stat.is_dir):
                continue
            local = _local(entry.stat, base)
            if local is not None:
                yield ScanResult(rel, local, base)
            if entry.stat.is_dir:
                stack.append(rel)
        for name, base in sorted(known.items()):
            rel = fs.join(directory, name)
            if not ignore.ignored(rel, base.is_dir):
                yield from _gone(rel, base, index)


def hash_file(
    root: Path, rel: str, expected: Local, on_bytes: Callable[[int], None] | None = None
) -> Local:
    """Hash a file that should still be ``expected``; the result carries the SHA-256.

    Raises :class:`FileBusyError` when another program holds a lock on it or it
    changed while being read (try again once it settles), ``FileNotFoundError`` when
    it is gone.
    """
    path = fs.abspath(root, rel)
    digest = hashlib.sha256()
    buf = bytearray(min(READ_SIZE, max(expected.size, 1 << 16)))
    view = memoryview(buf)
    with path.open("rb", buffering=0) as fh:
        try:
            # Advisory only, but programs that lock while writing (and Samba, which
            # maps Windows share locks to it) are waited for instead of half-read.
            fcntl.flock(fh.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise FileBusyError(errno.EBUSY, "locked by another program", str(path)) from exc
            raise
        before = os.fstat(fh.fileno())
        if before.st_size != expected.size or before.st_mtime_ns != expected.mtime_ns:
            raise FileBusyError(errno.EAGAIN, "changed while being read", str(path))
        while n := fh.readinto(buf):
            digest.update(view[:n])
            if on_bytes is not None:
                on_bytes(n)
        after = os.fstat(fh.fileno())
    if (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns):
        raise FileBusyError(errno.EAGAIN, "changed while being read", str(path))
    return Local(False, after.st_size, after.st_mtime_ns, after.st_ino, digest.hexdigest())
