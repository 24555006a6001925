"""The transfers table: uploads and downloads in progress, fading out when done."""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any

from PySide6.QtCore import QModelIndex, Qt, QTimer, Signal

from dropline.agent.control.protocol import ProgressJSON
from dropline.ui import format as fmt
from dropline.ui.models._base import (
    Clock,
    Index,
    OpacityRole,
    ProgressRole,
    RowRole,
    TableModel,
    file_name,
    folder_name,
)


@dataclass(frozen=True, slots=True)
class Transfer:
    transfer_id: str
    folder: str
    path: str
    direction: str
    bytes_done: int
    bytes_total: int
    bytes_per_second: float
    finished_at: float | None = None  # clock time it finished; the row fades out after
    result: str = ""  # "ok" / "failed" once finished

    @property
    def fraction(self) -> float:
        if self.bytes_total <= 0:
            return 1.0 if self.finished_at is not None else 0.0
        return min(1.0, self.bytes_done / self.bytes_total)

    @property
    def bytes_left(self) -> int:
        return max(0, self.bytes_total - self.bytes_done)


class TransfersModel(TableModel):
    """Uploads and downloads in progress; finished ones fade out, then leave."""

    COLUMNS = ("File", "Folder", "Progress", "Speed", "Time left")
    FILE, FOLDER, PROGRESS, SPEED, TIME_LEFT = range(5)
    RIGHT_ALIGNED = frozenset({SPEED, TIME_LEFT})

    totalsChanged = Signal()

    def __init__(
        self, clock: Clock = time.monotonic, fade_seconds: float = 3.0, parent: Any = None
    ) -> None:
        super().__init__(parent)
        self._clock = clock
        self._fade = fade_seconds
        self._rows: list[Transfer] = []
        # Runs only while something is fading: an animation, not a poll of the agent.
        self._fade_timer = QTimer(self)
        self._fade_timer.setInterval(100)
        self._fade_timer.timeout.connect(self.tick)

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or not 0 <= index.row() < len(self._rows):
            return None
        t = self._rows[index.row()]
        col = index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            if col == self.FILE:
                arrow = "↑" if t.direction == "up" else "↓"
                return f"{arrow} {file_name(t.path)}"
            if col == self.FOLDER:
                return folder_name(t.folder)
            if col == self.PROGRESS:
                if t.finished_at is not None:
                    return {"failed": "Failed", "stopped": "Stopped"}.get(t.result, "Done")
                return f"{fmt.size(t.bytes_done)} of {fmt.size(t.bytes_total)}"
            if col == self.SPEED:
                return "" if t.finished_at is not None else fmt.speed(t.bytes_per_second)
            if col == self.TIME_LEFT:
                if t.finished_at is not None:
                    return ""
                return fmt.time_left(t.bytes_left, t.bytes_per_second)
            return None
        if role == Qt.ItemDataRole.ToolTipRole and col in (self.FILE, self.FOLDER):
            return t.path if col == self.FILE else t.folder
        if role == Qt.ItemDataRole.TextAlignmentRole:
            return self.alignment(col)
        if role == ProgressRole:
            return t.fraction
        if role == OpacityRole:
            return self._opacity(t)
        if role == RowRole:
            return t
        return None

    # -- feeding

    def update(self, progress: ProgressJSON) -> None:
        """Progress of one transfer: a new row, or the existing row moved on."""
        tid = progress["transfer_id"]
        done = progress["bytes_done"] >= progress["bytes_total"]
        for n, t in enumerate(self._rows):
            if t.transfer_id == tid:
                updated = replace(
                    t,
                    bytes_done=progress["bytes_done"],
                    bytes_total=progress["bytes_total"],
                    bytes_per_second=progress["bytes_per_second"],
                )
                if done and t.finished_at is None:
                    updated = replace(updated, finished_at=self._clock(), result="ok")
                self._rows[n] = updated
                self._row_changed(n)
                break
        else:
            t = Transfer(
                transfer_id=tid,
                folder=progress["folder"],
                path=progress["path"],
                direction=progress["direction"],
                bytes_done=progress["bytes_done"],
                bytes_total=progress["bytes_total"],
                bytes_per_second=progress["bytes_per_second"],
                finished_at=self._clock() if done else None,
                result="ok" if done else "",
            )
            # New transfers join the end so the rows already on screen do not jump.
            self.beginInsertRows(QModelIndex(), len(self._rows), len(self._rows))
            self._rows.append(t)
            self.endInsertRows()
        if done:
            self._fade_timer.start()
        self.totalsChanged.emit()

    def finish(self, folder: str, path: str, result: str) -> None:
        """The agent recorded the transfer of ``path`` in history: let its row fade."""
        for n, t in enumerate(self._rows):
            if t.folder == folder and t.path == path and t.finished_at is None:
                self._rows[n] = replace(
                    t,
                    finished_at=self._clock(),
                    result=result,
                    bytes_done=t.bytes_total if result == "ok" else t.bytes_done,
                )
                self._row_changed(n)
                self._fade_timer.start()
                self.totalsChanged.emit()

    def settle(self) -> None:
        """The agent says nothing is moving: rows still running stopped (paused, or gone)."""
        now = self._clock()
        for n, t in enumerate(self._rows):
            if t.finished_at is None:
                self._rows[n] = replace(t, finished_at=now, result="stopped")
                self._row_changed(n)
                self._fade_timer.start()
        self.totalsChanged.emit()

    def clear(self) -> None:
        """Forget everything (the agent restarted: its transfers start afresh)."""
        self.beginResetModel()
        self._rows.clear()
        self.endResetModel()
        self._fade_timer.stop()
        self.totalsChanged.emit()

    def tick(self) -> None:
        """Advance the fade and drop rows that have faded completely."""
        now = self._clock()
        for n in range(len(self._rows) - 1, -1, -1):
            t = self._rows[n]
            if t.finished_at is None:
                continue
            if now - t.finished_at >= self._fade:
                self.beginRemoveRows(QModelIndex(), n, n)
                del self._rows[n]
                self.endRemoveRows()
            else:
                self._row_changed(n)
        if not any(t.finished_at is not None for t in self._rows):
            self._fade_timer.stop()
        self.totalsChanged.emit()

    def transfers(self) -> list[Transfer]:
        return list(self._rows)

    def active(self) -> list[Transfer]:
        return [t for t in self._rows if t.finished_at is None]

    def totals(self) -> tuple[int, int, float]:
        """(bytes done, bytes in all, bytes per second) over the transfers still running."""
        running = self.active()
        return (
            sum(t.bytes_done for t in running),
            sum(t.bytes_total for t in running),
            sum(t.bytes_per_second for t in running),
        )

    def _opacity(self, t: Transfer) -> float:
        if t.finished_at is None:
            return 1.0
        elapsed = self._clock() - t.finished_at
        return max(0.0, 1.0 - elapsed / self._fade) if self._fade > 0 else 0.0
