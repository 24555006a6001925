"""The engine's only contact with the local disk: stat, directory listing, atomic
placement of downloaded files, moves that never overwrite, and removal of what the
engine knows to be unchanged.

Paths inside a sync folder are "relative paths": ``/``-separated, no leading slash,
``""`` for the folder itself.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat as stat_mod
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

# The engine's private directory inside every sync folder: partial downloads live
# here so the final rename stays on one file system (and so stays atomic).
ENGINE_DIR = ".dropline"
PARTIAL_DIR = f"{ENGINE_DIR}/partial"


@dataclass(frozen=True, slots=True)
class LocalStat:
    """What the engine knows about a local entry without reading it."""

    is_dir: bool
    size: int
    mtime_ns: int
    inode: int


class NotRegularError(OSError):
    """The path is a symlink, socket, device or FIFO: the engine does not sync those."""


def abspath(root: Path, rel: str) -> Path:
    return root / rel if rel else root


def join(parent: str, name: str) -> str:
    return f"{parent}/{name}" if parent else name


def parent_of(rel: str) -> str:
    return rel.rpartition("/")[0]


def is_under(rel: str, ancestor: str) -> bool:
    """True if ``rel`` is ``ancestor`` or inside it (``""`` is the whole folder)."""
    return not ancestor or rel == ancestor or rel.startswith(ancestor + "/")


def _to_stat(st: os.stat_result) -> LocalStat | None:
    if stat_mod.S_ISDIR(st.st_mode):
        return LocalStat(True, 0, st.st_mtime_ns, st.st_ino)
    if stat_mod.S_ISREG(st.st_mode):
        return LocalStat(False, st.st_size, st.st_mtime_ns, st.st_ino)
    return None


def stat(root: Path, rel: str) -> LocalStat | None:
    """The entry at ``rel``, or None when nothing is there. Symlinks and special files
    raise :class:`NotRegularError` so the caller can report them instead of following."""
    try:
        st = os.lstat(abspath(root, rel))
    except FileNotFoundError:
        return None
    except NotADirectoryError:
        return None
    result = _to_stat(st)
    if result is None:
        raise NotRegularError(errno.EINVAL, "not a regular file or folder", str(abspath(root, rel)))
    return result


@dataclass(frozen=True, slots=True)
class DirEntry:
    name: str
    stat: LocalStat | None  # None when the entry is not a regular file or folder
    error: str | None = None


def list_dir(path: Path) -> Iterator[DirEntry]:
    """The entries of one directory, each stat'ed once (lstat: links are not followed)."""
    with os.scandir(path) as it:
        for entry in it:
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError as exc:
                yield DirEntry(entry.name, None, exc.strerror or str(exc))
                continue
            yield DirEntry(entry.name, _to_stat(st))


def make_dirs(root: Path, rel: str) -> LocalStat:
    path = abspath(root, rel)
    path.mkdir(parents=True, exist_ok=True)
    result = stat(root, rel)
    assert result is not None
    return result


def fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def partial_path(root: Path, key: str) -> Path:
    """Where a download in progress is kept (across restarts) until it is verified (the
    caller makes its directory when it writes there)."""
    return root / PARTIAL_DIR / f"{key}.part"


def clear_partials(root: Path) -> int:
    """Remove every partial download of a folder (when the journal that knew them is
    lost, nothing can resume them); returns how many there were."""
    directory = root / PARTIAL_DIR
    removed = 0
    try:
        entries = list(directory.iterdir())
    except FileNotFoundError:
        return 0
    for entry in entries:
        if entry.suffix == ".part" and entry.is_file():
            with contextlib.suppress(FileNotFoundError):
                entry.unlink()
                removed += 1
    return removed


def new_partial_key() -> str:
    return uuid.uuid4().hex


class ChangedMeanwhileError(OSError):
    """The local entry is no longer what the plan was based on; nothing was changed."""


def matches(current: LocalStat | None, expected: LocalStat | None) -> bool:
    if current is None or expected is None:
        return current is None and expected is None
    if current.is_dir or expected.is_dir:
        return current.is_dir == expected.is_dir
    return (
        current.size == expected.size
        and current.mtime_ns == expected.mtime_ns
        and current.inode == expected.inode
    )


def replaced(root: Path, rel: str, expected: LocalStat) -> bool:
    """Whether a file other than ``expected`` is at ``rel`` now (saved again, or a new
    file renamed over it). A path gone or unreadable is not: the watcher reports that."""
    try:
        current = stat(root, rel)
    except OSError:
        return False
    return current is not None and not matches(current, expected)


def place(
    root: Path, src: Path, rel: str, expected: LocalStat | None, mtime: float | None
) -> LocalStat:
    """Move a verified download into place, only if ``rel`` is still as expected
    (absent, or the very file the plan saw). The file is fsynced first and its
    directory after, so a crash leaves either the old file or the new one."""
    target = abspath(root, rel)
    target.parent.mkdir(parents=True, exist_ok=True)
    if mtime is not None:
        os.utime(src, ns=(int(mtime * 1e9), int(mtime * 1e9)))
    fsync_file(src)
    if not matches(stat(root, rel), expected):
        raise ChangedMeanwhileError(errno.EAGAIN, "changed while downloading", str(target))
    os.replace(src, target)
    fsync_dir(target.parent)
    result = stat(root, rel)
    assert result is not None
    return result


def move(root: Path, src: str, dst: str) -> LocalStat:
    """Rename without ever replacing something at ``dst``."""
    target = abspath(root, dst)
    if os.path.lexists(target):
        raise FileExistsError(errno.EEXIST, "already exists", str(target))
    target.parent.mkdir(parents=True, exist_ok=True)
    os.rename(abspath(root, src), target)
    result = stat(root, dst)
    assert result is not None
    return result


def move_out(src: Path, dst_dir: Path) -> Path:
    """Move a file into another directory (an archive), choosing a free name."""
    dst_dir.mkdir(parents=True, exist_ok=True)
    target = dst_dir / src.name
    n = 1
    while os.path.lexists(target):
        n += 1
        target = dst_dir / f"{Path(src.name).stem} ({n}){Path(src.name).suffix}"
    os.rename(src, target)
    return target


def remove_file(root: Path, rel: str, expected: LocalStat) -> None:
    """Delete a file only if it is still the one the engine synced."""
    if not matches(stat(root, rel), expected):
        raise ChangedMeanwhileError(errno.EAGAIN, "changed since it was synced", rel)
    os.unlink(abspath(root, rel))


def remove_empty_dir(root: Path, rel: str) -> bool:
    """Remove a directory if it is empty (or holds only the engine's own files); False if
    anything else is in it."""
    path = abspath(root, rel)
    try:
        os.rmdir(path)
    except FileNotFoundError:
        return True
    except OSError as exc:
        if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
            return False
        raise
    return True


def case_sensitive(root: Path) -> bool:
    """Probe the folder's file system: can ``a`` and ``A`` be two files?"""
    probe = root / ENGINE_DIR / f"case-probe-{uuid.uuid4().hex}"
    try:
        probe.parent.mkdir(parents=True, exist_ok=True)
        probe.touch()
        return not probe.with_name(probe.name.upper()).exists()
    except OSError:
        return True
    finally:
        with contextlib.suppress(OSError):
            probe.unlink()
