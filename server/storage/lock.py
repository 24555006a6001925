"""The data directory's lock: one ``serve``, ``restore`` or ``migrate`` at a time. An
exclusive ``flock`` on ``<data dir>/server.lock``, which names its holder's process id
so whoever is turned away can be told who; the kernel drops it when the process ends."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from types import TracebackType

LOCK_NAME = "server.lock"


class DataDirLocked(Exception):
    """Another process holds the data directory."""

    def __init__(self, data_dir: Path, holder: str) -> None:
        super().__init__(f"the data directory {data_dir} is in use by {holder}; stop it first")
        self.data_dir = data_dir
        self.holder = holder


def _describe(text: str) -> str:
    pid, _, command = text.strip().partition(" ")
    if not pid.isdigit():
        # The holder has the lock but has not written its id yet.
        return "another dropline-server process"
    return f"dropline-server {command or 'serve'} (process {pid})"


class DataDirLock:
    """``with DataDirLock(data_dir, "restore"):`` or :meth:`acquire` for a process's life."""

    def __init__(self, data_dir: Path, command: str = "serve") -> None:
        self.data_dir = data_dir
        self.command = command
        self._fd = -1

    @property
    def path(self) -> Path:
        return self.data_dir / LOCK_NAME

    def acquire(self) -> None:
        """Take the lock or raise :class:`DataDirLocked` at once (never waits)."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            text = os.pread(fd, 200, 0).decode("utf-8", "replace")
            os.close(fd)
            raise DataDirLocked(self.data_dir, _describe(text)) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {self.command}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd >= 0:
            # Emptied first: a stale id must never name an unrelated process later.
            os.ftruncate(self._fd, 0)
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> DataDirLock:
        self.acquire()
        return self

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _value: BaseException | None,
        _tb: TracebackType | None,
    ) -> None:
        self.release()


__all__ = ["LOCK_NAME", "DataDirLock", "DataDirLocked"]
