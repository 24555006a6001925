"""Watches the config and policy files and calls back (debounced) when either changes.

The parent directories are watched, not the files: editors and config management
replace a file by renaming a new one over it, which a watch on the file would miss.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

log = logging.getLogger(__name__)

DEBOUNCE = 0.3  # seconds of quiet before a reload: a save is often several events


class _Handler(FileSystemEventHandler):
    def __init__(self, watcher: ConfigWatcher) -> None:
        self.watcher = watcher

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in ("opened", "closed_no_write"):
            return
        paths = {str(event.src_path), str(getattr(event, "dest_path", "") or "")}
        if paths & self.watcher.names:
            self.watcher.loop.call_soon_threadsafe(self.watcher.poke)


class ConfigWatcher:
    def __init__(
        self,
        files: Sequence[Path],
        on_change: Callable[[], None],
        loop: asyncio.AbstractEventLoop,
        debounce: float = DEBOUNCE,
    ) -> None:
        self.files = [f.absolute() for f in files]
        self.names = {str(f) for f in self.files}
        self.on_change = on_change
        self.loop = loop
        self.debounce = debounce
        self._observer: Observer | None = None  # type: ignore[valid-type]
        self._timer: asyncio.TimerHandle | None = None

    def start(self) -> None:
        observer = Observer()
        handler = _Handler(self)
        watched = set()
        for f in self.files:
            parent = f.parent
            if parent.is_dir() and parent not in watched:
                observer.schedule(handler, str(parent), recursive=False)
                watched.add(parent)
        observer.daemon = True
        observer.start()
        self._observer = observer
        log.debug("watching %s for config changes", sorted(str(w) for w in watched))

    def poke(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self.loop.call_later(self.debounce, self._fire)

    def _fire(self) -> None:
        self._timer = None
        self.on_change()

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=5)
            self._observer = None
