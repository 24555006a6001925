"""Desktop notifications, batched: "12 files uploaded to Reports", never a storm.

``NotificationBatcher`` is pure (it takes a clock) and decides what to say and
when; ``Notifier`` schedules it with one single-shot timer and shows the result
through the tray icon.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

from PySide6.QtCore import QObject, QTimer, Signal

from dropline.ui import format as fmt
from dropline.ui.models import file_name, folder_name

log = logging.getLogger(__name__)

Clock = Callable[[], float]


class Level(IntEnum):
    INFO = 0
    WARNING = 1
    ERROR = 2


@dataclass(frozen=True, slots=True)
class Notice:
    title: str
    body: str
    level: Level
    opens: str = ""  # the window a click opens ("signin"); empty: by level


@dataclass(slots=True)
class _Group:
    count: int = 0
    first_name: str = ""


@dataclass(slots=True)
class _Pending:
    done: dict[tuple[str, str], _Group] = field(default_factory=dict)  # (direction, folder)
    failed: list[tuple[str, str, str]] = field(default_factory=list)  # (direction, path, why)
    conflicts: list[tuple[str, str]] = field(default_factory=list)  # (folder, path)
    errors: list[str] = field(default_factory=list)
    first_at: float | None = None
    last_at: float = 0.0

    def empty(self) -> bool:
        return self.first_at is None


class NotificationBatcher:
    """Collects events and turns them into at most one notice per ``min_gap`` seconds.

    A batch is shown once events stop for ``quiet`` seconds, or ``max_wait`` seconds
    after it started if they keep coming, and never sooner than ``min_gap`` after
    the previous notice.
    """

    MAX_LINES = 4

    def __init__(
        self,
        clock: Clock = time.monotonic,
        quiet: float = 2.0,
        max_wait: float = 10.0,
        min_gap: float = 10.0,
    ) -> None:
        self._clock = clock
        self._quiet = quiet
        self._max_wait = max_wait
        self._min_gap = min_gap
        self._pending = _Pending()
        self._last_shown: float | None = None

    def transfer(
        self, folder: str, path: str, direction: str, result: str, error: str | None = None
    ) -> None:
        if result == "ok":
            group = self._pending.done.setdefault((direction, folder), _Group())
            group.count += 1
            if not group.first_name:
                group.first_name = file_name(path)
        elif result == "failed":
            self._pending.failed.append((direction, path, error or ""))
        elif result == "conflict":
            self._pending.conflicts.append((folder, path))
        else:
            return  # skipped files are not news
        self._touch()

    def conflict(self, folder: str, path: str) -> None:
        self._pending.conflicts.append((folder, path))
        self._touch()

    def error(self, message: str) -> None:
        if message not in self._pending.errors:
            self._pending.errors.append(message)
        self._touch()

    def due(self) -> float | None:
        """Clock time at which :meth:`flush` will have something to show, or None."""
        p = self._pending
        if p.first_at is None:
            return None
        ready = min(p.last_at + self._quiet, p.first_at + self._max_wait)
        if self._last_shown is not None:
            ready = max(ready, self._last_shown + self._min_gap)
        return ready

    def flush(self) -> Notice | None:
        """The batched notice, if it is due; the batch starts afresh."""
        due = self.due()
        if due is None or self._clock() < due:
            return None
        notice = self._compose(self._pending)
        self._pending = _Pending()
        self._last_shown = self._clock()
        return notice

    def _touch(self) -> None:
        now = self._clock()
        if self._pending.first_at is None:
            self._pending.first_at = now
        self._pending.last_at = now

    def _compose(self, p: _Pending) -> Notice:
        lines: list[str] = []
        level = Level.INFO
        if p.errors:
            level = Level.ERROR
            lines.extend(p.errors)
        if p.failed:
            level = Level.ERROR
            if len(p.failed) == 1:
                direction, path, why = p.failed[0]
                name = file_name(path)
                if direction in ("up", "down"):
                    verb = "uploaded" if direction == "up" else "downloaded"
                    lines.append(f"{name} could not be {verb}" + (f": {why}" if why else ""))
                else:  # an issue the agent raised, with its own words
                    lines.append(f"{name}: {why}" if why else f"{name} could not be synced")
            else:
                lines.append(f"{fmt.plural(len(p.failed), 'file')} could not be synced")
        if p.conflicts:
            level = max(level, Level.WARNING)
            if len(p.conflicts) == 1:
                folder, path = p.conflicts[0]
                lines.append(
                    f"{file_name(path)} in {folder_name(folder)} was changed in two places; "
                    "both versions were kept"
                )
            else:
                lines.append(
                    f"{fmt.plural(len(p.conflicts), 'conflict')}: both versions of each were kept"
                )
        for (direction, folder), group in sorted(p.done.items(), key=lambda kv: -kv[1].count):
            verb, prep = ("uploaded", "to") if direction == "up" else ("downloaded", "to")
            what = group.first_name if group.count == 1 else fmt.plural(group.count, "file")
            lines.append(f"{what} {verb} {prep} {folder_name(folder)}")
        if level > Level.INFO:
            lines.append("Open Issues to see what to do.")
        title, body = lines[0], lines[1:]
        if len(body) > self.MAX_LINES:
            hidden = len(body) - self.MAX_LINES + 1
            body = [*body[: self.MAX_LINES - 1], f"and {hidden} more"]
        return Notice(title=title, body="\n".join(body), level=level)


class Notifier(QObject):
    """Schedules the batcher with one single-shot timer and emits each notice."""

    notice = Signal(object)  # Notice

    def __init__(
        self,
        batcher: NotificationBatcher | None = None,
        clock: Clock = time.monotonic,
        parent: Any = None,
    ) -> None:
        super().__init__(parent)
        self._clock = clock
        self.batcher = batcher or NotificationBatcher(clock=clock)
        self.enabled = True
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(self._fire)

    def transfer(
        self, folder: str, path: str, direction: str, result: str, error: str | None = None
    ) -> None:
        if self.enabled:
            self.batcher.transfer(folder, path, direction, result, error)
            self._schedule()

    def conflict(self, folder: str, path: str) -> None:
        if self.enabled:
            self.batcher.conflict(folder, path)
            self._schedule()

    def error(self, message: str) -> None:
        if self.enabled:
            self.batcher.error(message)
            self._schedule()

    def now(self, notice: Notice) -> None:
        """Show ``notice`` at once, outside the batch and whatever ``enabled`` says: for the
        rare notice the user must act on (the first sign-in), not news about transfers."""
        self.notice.emit(notice)

    def _schedule(self) -> None:
        due = self.batcher.due()
        if due is None:
            return
        self._timer.start(max(0, int((due - self._clock()) * 1000)))

    def _fire(self) -> None:
        notice = self.batcher.flush()
        if notice is not None:
            log.debug("notification: %s", notice.title)
            self.notice.emit(notice)
        self._schedule()
