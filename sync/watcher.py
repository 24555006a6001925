"""Watches one sync folder with watchdog and hands events to its folder loop.

The kernel mask is narrowed with ``event_filter`` (creates, closes after writing,
deletes, moves): with watchdog's default mask a burst of 10,000 creates overflows
inotify's queue and loses events. A new file is held until its writer closes it; a
file or folder renamed into place (moved in from outside, or within the folder) is
complete already and is not held. Losing events is never silent here: an overflow
(which watchdog only logs), a dead observer thread, or running out of inotify
watches (``fs.inotify.max_user_watches``, which watchdog swallows for
subdirectories) each reach the folder as a :class:`Trouble`, and the folder
rescans.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from enum import Enum
from pathlib import Path

from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver

from dropline.sync.aggregator import Kind
from dropline.sync.fs import ENGINE_DIR

log = logging.getLogger(__name__)

EVENT_FILTER = [
    FileCreatedEvent,
    FileClosedEvent,
    FileDeletedEvent,
    FileMovedEvent,
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
]
OBSERVER_TIMEOUT = 300.0
NEW_DIR_WINDOW = 2.0  # seconds after a folder appears in which its files count as found
WATCHDOG_LOGGERS = ("watchdog.observers.inotify", "watchdog.observers.inotify_c")


class Trouble(Enum):
    OVERFLOW = "overflow"  # the kernel dropped events: rescan everything
    DEAD = "dead"  # the observer stopped: restart it and rescan
    WATCH_LIMIT = "watch-limit"  # not every directory is watched: rescan periodically


Post = Callable[[list[tuple[str, Kind]]], None]


class _OverflowHandler(logging.Handler):
    """watchdog reports an inotify overflow only as a log line: turn it into Trouble."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.watchers: set[FolderWatcher] = set()
        self.registry_lock = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage().lower()
        if "overflow" not in text and "unable to rebuild" not in text:
            return
        with self.registry_lock:
            watchers = list(self.watchers)
        owners = [w for w in watchers if w.owns_thread(record.thread)]
        for watcher in owners or watchers:  # unknown thread: every folder rescans
            watcher.report(Trouble.OVERFLOW)


_overflow = _OverflowHandler()
for _name in WATCHDOG_LOGGERS:
    logging.getLogger(_name).addHandler(_overflow)


def new_observer() -> BaseObserver:
    """The platform's observer; on Linux one that reports a move from or to outside the
    watched folder as a move (the default reports a file moved in as created, which
    looks like a new file still being written)."""
    # Its dispatcher wakes every `timeout` seconds to look for a stop; stop() posts a
    # sentinel anyway, so a long timeout only saves idle wake-ups.
    if sys.platform.startswith("linux"):
        from watchdog.observers.inotify import InotifyObserver  # importable on Linux only

        return InotifyObserver(timeout=OBSERVER_TIMEOUT, generate_full_events=True)
    return Observer(timeout=OBSERVER_TIMEOUT)


def process_watch_count() -> int | None:
    """How many inotify watches this process holds (from /proc), or None if unknown."""
    try:
        fds = os.listdir("/proc/self/fd")
    except OSError:
        return None
    total = 0
    for fd in fds:
        try:
            if os.readlink(f"/proc/self/fd/{fd}") != "anon_inode:inotify":
                continue
            with open(f"/proc/self/fdinfo/{fd}") as info:
                total += sum(1 for line in info if line.startswith("inotify wd:"))
        except OSError:
            continue
    return total


_expected_dirs: dict[FolderWatcher, int] = {}


class _Handler(FileSystemEventHandler):
    def __init__(self, watcher: FolderWatcher) -> None:
        self.watcher = watcher
        # Folders that just appeared: watchdog reports the files it finds in them as
        # created, but their close may have happened before the watch existed.
        self._new_dirs: dict[str, float] = {}

    def on_any_event(self, event: FileSystemEvent) -> None:
        w = self.watcher
        if isinstance(event, FileCreatedEvent):
            src = os.fsdecode(event.src_path)
            found = event.is_synthetic or self._is_new_dir(os.path.dirname(src))
            # A file found in a new folder (or in one moved in) is not held for a close
            # that may never come; the settling window and the re-check during upload
            # cover a late writer.
            w.push(src, Kind.DONE if found else Kind.WRITING)
        elif isinstance(event, FileMovedEvent | DirMovedEvent):
            # Nobody writes through a rename: what it puts in place is complete, so it
            # is not held for a close (a rename sends none). A source or destination
            # outside the folder is "" (moved in or out) and push() drops it. A writer
            # that keeps a moved-in file open and goes on writing is still guarded: the
            # folder holds a file whose mtime is within ``stable_seconds``, and hashing
            # and uploading give up on a file that changes under them.
            w.push(event.src_path, Kind.DONE)
            w.push(event.dest_path, Kind.DONE)
        elif isinstance(event, FileClosedEvent):
            w.push(event.src_path, Kind.CLOSED)
        elif isinstance(event, DirCreatedEvent):
            self._remember_dir(os.fsdecode(event.src_path))
            w.push(event.src_path, Kind.DONE)
        elif isinstance(event, FileDeletedEvent | DirDeletedEvent):
            w.push(event.src_path, Kind.DONE)

    def _remember_dir(self, path: str) -> None:
        now = time.monotonic()
        if len(self._new_dirs) > 1000:
            self._new_dirs = {p: t for p, t in self._new_dirs.items() if now - t < NEW_DIR_WINDOW}
        self._new_dirs[path] = now

    def _is_new_dir(self, path: str) -> bool:
        seen = self._new_dirs.get(path)
        return seen is not None and time.monotonic() - seen < NEW_DIR_WINDOW


class FolderWatcher:
    """watchdog on one folder; events and troubles are delivered on ``loop``."""

    def __init__(
        self,
        root: Path,
        loop: asyncio.AbstractEventLoop,
        post: Post,
        on_trouble: Callable[[Trouble], None],
    ) -> None:
        self.root = root
        self._loop = loop
        self._post = post
        self._on_trouble = on_trouble
        self._buffer: list[tuple[str, Kind]] = []
        self._lock = threading.Lock()
        self._observer: BaseObserver | None = None
        self._prefix = str(root).rstrip("/") + "/"
        self._engine_prefix = ENGINE_DIR + "/"

    def start(self) -> None:
        """Start watching; raises OSError (ENOSPC names the watch limit) if it cannot."""
        observer = new_observer()
        observer.schedule(_Handler(self), str(self.root), recursive=True, event_filter=EVENT_FILTER)
        try:
            observer.start()
        except OSError as exc:
            observer.stop()
            if exc.errno == errno.ENOSPC:
                self.report(Trouble.WATCH_LIMIT)
            raise
        self._observer = observer
        with _overflow.registry_lock:
            _overflow.watchers.add(self)

    def stop(self) -> None:
        with _overflow.registry_lock:
            _overflow.watchers.discard(self)
        _expected_dirs.pop(self, None)
        observer, self._observer = self._observer, None
        if observer is not None:
            observer.stop()
            if observer.is_alive():
                observer.join(timeout=5)

    def alive(self) -> bool:
        observer = self._observer
        if observer is None or not observer.is_alive():
            return False
        return all(e.is_alive() for e in observer.emitters)

    def owns_thread(self, ident: int | None) -> bool:
        observer = self._observer
        if observer is None or ident is None:
            return False
        return ident == observer.ident or any(e.ident == ident for e in observer.emitters)

    def check(self, directories: int | None = None) -> Trouble | None:
        """Called now and then by the folder: is every event still reaching us?
        ``directories`` is how many folders its last full scan saw."""
        if self._observer is not None and not self.alive():
            return Trouble.DEAD
        if directories is not None:
            _expected_dirs[self] = directories + 1  # and the root
            held = process_watch_count()
            if held is not None and held < sum(_expected_dirs.values()):
                return Trouble.WATCH_LIMIT
        return None

    def report(self, trouble: Trouble) -> None:
        """From any thread."""
        with contextlib.suppress(RuntimeError):  # the loop is closed: the engine is stopping
            self._loop.call_soon_threadsafe(self._on_trouble, trouble)

    def push(self, path: str | bytes, kind: Kind) -> None:
        """From watchdog's thread: buffer, and wake the loop once per burst."""
        text = os.fsdecode(path)
        if not text.startswith(self._prefix):
            return
        rel = text[len(self._prefix) :]
        if rel == ENGINE_DIR or rel.startswith(self._engine_prefix):
            return  # the engine's own partial files
        with self._lock:
            wake = not self._buffer
            self._buffer.append((rel, kind))
        if wake:
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._flush)

    def _flush(self) -> None:
        with self._lock:
            events, self._buffer = self._buffer, []
        if events:
            self._post(events)
