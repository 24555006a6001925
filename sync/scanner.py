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
import stat as stat_mod
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
    def signatures(self, parent: str) -> Mapping[str, tuple[int, int, int, int]]:
        """``(is_dir, size, mtime_ns, inode)`` of each child of ``parent`` by name."""
        ...

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
        known = dict(index.signatures(directory))
        path = fs.abspath(root, directory)
        try:
            with os.scandir(path) as it:
                entries = list(it)
        except FileNotFoundError:
            continue  # vanished under us: its parent's listing reports it
        except OSError as exc:
            yield ScanResult(directory, None, index.get(directory), exc.strerror or str(exc))
            continue
        if counter is not None:
            counter(len(entries))
        for entry in entries:
            name = entry.name
            known_sig = known.pop(name, None)
            rel = fs.join(directory, name)
            try:
                st = entry.stat(follow_symlinks=False)  # lstat: links are not followed
            except OSError as exc:
                base = index.get(rel) if known_sig is not None else None
                yield ScanResult(rel, None, base, exc.strerror or str(exc))
                continue
            if (
                known_sig is not None
                and not known_sig[0]
                and known_sig[1] == st.st_size
                and known_sig[2] == st.st_mtime_ns
                and known_sig[3] == st.st_ino
                and stat_mod.S_ISREG(st.st_mode)
            ):
                # Unchanged since the base: nothing to say whatever the ignore rules
                # (the common case of a restart, so it skips the rest of the loop).
                continue
            local_stat = _to_local_stat(st)
            if local_stat is None:
                log.debug("not a regular file or folder, left alone: %s", rel)
                continue
            if ignore.ignored(rel, local_stat.is_dir):
                continue
            base = index.get(rel) if known_sig is not None else None
            local = _local(local_stat, base)
            if local is not None:
                yield ScanResult(rel, local, base)
            if local_stat.is_dir:
                stack.append(rel)
        for name, known_sig in sorted(known.items()):
            rel = fs.join(directory, name)
            if not ignore.ignored(rel, bool(known_sig[0])):
                gone = index.get(rel)
                if gone is not None:
                    yield from _gone(rel, gone, index)


def _to_local_stat(st: os.stat_result) -> fs.LocalStat | None:
    if stat_mod.S_ISDIR(st.st_mode):
        return fs.LocalStat(True, 0, st.st_mtime_ns, st.st_ino)
    if stat_mod.S_ISREG(st.st_mode):
        return fs.LocalStat(False, st.st_size, st.st_mtime_ns, st.st_ino)
    return None


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
