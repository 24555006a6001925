"""The history table: transfers the agent recorded, paged in as the view scrolls."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import QModelIndex, Qt, Signal

from dropline.agent.control.protocol import HistoryRowJSON
from dropline.ui import format as fmt
from dropline.ui.models._base import (
    CONFLICT_COLOUR,
    DIRECTION_WORDS,
    FAILED_COLOUR,
    RESULT_WORDS,
    Index,
    RowRole,
    SortRole,
    TableModel,
    display_path,
    folder_name,
)


@dataclass(frozen=True, slots=True)
class HistoryFilter:
    """What the history window shows; ``None`` means "any"."""

    folder: str | None = None
    direction: str | None = None  # "up" | "down"
    result: str | None = None  # "ok" | "failed" | "conflict" | "skipped"
    search: str | None = None  # part of the file's path, any case
    since: float | None = None
    until: float | None = None

    def query(self, limit: int, before_id: int | None) -> dict[str, Any]:
        """Arguments of the agent's ``history.query`` for one page."""
        args: dict[str, Any] = {"limit": limit}
        if before_id is not None:
            args["before_id"] = before_id
        for key in ("folder", "direction", "result", "since", "until"):
            value = getattr(self, key)
            if value is not None:
                args[key] = value
        if self.search:
            args["search"] = self.search
        return args

    def matches(self, row: HistoryRowJSON) -> bool:
        """The same test the agent applies, for rows that arrive live."""
        if self.folder is not None and row["folder"] != self.folder:
            return False
        if self.direction is not None and row["direction"] != self.direction:
            return False
        if self.result is not None and row["result"] != self.result:
            return False
        if self.search and self.search.casefold() not in row["path"].casefold():
            return False
        if self.since is not None and row["time"] < self.since:
            return False
        return not (self.until is not None and row["time"] >= self.until)


# Called with a ``history.query`` argument dict and a callback that takes the page,
# or ``None`` when the page could not be fetched. May answer later, on the UI thread.
PageFetcher = Callable[[dict[str, Any], Callable[[Sequence[HistoryRowJSON] | None], None]], None]


def _speed(row: HistoryRowJSON) -> float:
    return row["size"] / row["duration"] if row["duration"] > 0 else 0.0


class HistoryModel(TableModel):
    """Transfer history, newest first, fetched a page at a time as the view scrolls."""

    COLUMNS = ("Time", "Folder", "File", "Direction", "Size", "Duration", "Speed", "Result")
    TIME, FOLDER, FILE, DIRECTION, SIZE, DURATION, SPEED, RESULT = range(8)
    RIGHT_ALIGNED = frozenset({SIZE, DURATION, SPEED})

    loadingChanged = Signal(bool)
    loadFailed = Signal(str)

    def __init__(self, fetch: PageFetcher, page_size: int = 200, parent: Any = None) -> None:
        super().__init__(parent)
        self._fetch = fetch
        self._page_size = page_size
        self._rows: list[HistoryRowJSON] = []
        self._ids: set[int] = set()
        self._filter = HistoryFilter()
        self._oldest_id: int | None = None
        self._exhausted = False
        self._loading = False
        self._failed = False
        # Bumped on every reset so a page that was asked for under an older filter is dropped.
        self._generation = 0
        self._sort_column = self.TIME
        self._sort_order = Qt.SortOrder.DescendingOrder
        self._after_load: list[Callable[[], None]] = []

    # -- Qt model interface

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or not 0 <= index.row() < len(self._rows):
            return None
        row = self._rows[index.row()]
        col = index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            return self._display(row, col)
        if role == Qt.ItemDataRole.ToolTipRole:
            if col == self.FOLDER:
                return row["folder"]
            if col == self.FILE:
                return row["path"]
            if col == self.RESULT and row["error"]:
                return row["error"]
            return None
        if role == Qt.ItemDataRole.TextAlignmentRole:
            return self.alignment(col)
        if role == Qt.ItemDataRole.ForegroundRole and col == self.RESULT:
            if row["result"] == "failed":
                return FAILED_COLOUR
            if row["result"] == "conflict":
                return CONFLICT_COLOUR
            return None
        if role == SortRole:
            return self._sort_key(row, col)
        if role == RowRole:
            return row
        return None

    def _display(self, row: HistoryRowJSON, col: int) -> str | None:
        if col == self.TIME:
            return fmt.timestamp(row["time"])
        if col == self.FOLDER:
            return folder_name(row["folder"])
        if col == self.FILE:
            return display_path(row["path"])
        if col == self.DIRECTION:
            return DIRECTION_WORDS.get(row["direction"], row["direction"])
        if col == self.SIZE:
            return fmt.size(row["size"])
        if col == self.DURATION:
            return fmt.duration(row["duration"])
        if col == self.SPEED:
            return fmt.speed(_speed(row))
        if col == self.RESULT:
            return RESULT_WORDS.get(row["result"], row["result"])
        return None

    def _sort_key(self, row: HistoryRowJSON, col: int) -> Any:
        keys: dict[int, Any] = {
            self.TIME: (row["time"], row["id"]),
            self.FOLDER: (folder_name(row["folder"]).casefold(), row["id"]),
            self.FILE: (row["path"].casefold(), row["id"]),
            self.DIRECTION: (row["direction"], row["id"]),
            self.SIZE: (row["size"], row["id"]),
            self.DURATION: (row["duration"], row["id"]),
            self.SPEED: (_speed(row), row["id"]),
            self.RESULT: (row["result"], row["id"]),
        }
        return keys.get(col, row["id"])

    def canFetchMore(self, parent: Index = QModelIndex()) -> bool:  # noqa: B008
        if parent.isValid():
            return False
        return not (self._exhausted or self._loading or self._failed)

    def fetchMore(self, parent: Index = QModelIndex()) -> None:  # noqa: B008
        if not self.canFetchMore(parent):
            return
        self._set_loading(True)
        generation = self._generation
        args = self._filter.query(self._page_size, self._oldest_id)

        def deliver(rows: Sequence[HistoryRowJSON] | None) -> None:
            self._page_arrived(generation, rows)

        self._fetch(args, deliver)

    def sort(self, column: int, order: Qt.SortOrder = Qt.SortOrder.AscendingOrder) -> None:
        if not 0 <= column < len(self.COLUMNS):
            return
        self._sort_column = column
        self._sort_order = order
        self._resort()

    # -- feeding

    def _page_arrived(self, generation: int, rows: Sequence[HistoryRowJSON] | None) -> None:
        if generation != self._generation:
            return  # asked for under a filter that has since changed
        self._set_loading(False)
        if rows is None:
            self._failed = True
            self.loadFailed.emit("The history could not be loaded from the Dropline service.")
            self._run_after_load()
            return
        if len(rows) < self._page_size:
            self._exhausted = True
        if rows:
            oldest = min(r["id"] for r in rows)
            self._oldest_id = oldest if self._oldest_id is None else min(self._oldest_id, oldest)
        fresh = [r for r in rows if r["id"] not in self._ids]
        if fresh:
            first = len(self._rows)
            self.beginInsertRows(QModelIndex(), first, first + len(fresh) - 1)
            self._rows.extend(fresh)
            self._ids.update(r["id"] for r in fresh)
            self.endInsertRows()
            if not self._default_sort():
                self._resort()
        if self._after_load:
            if self._exhausted:
                self._run_after_load()
            else:
                self.fetchMore(QModelIndex())

    def add_live(self, row: HistoryRowJSON) -> bool:
        """A row the agent just recorded: shown at once if it passes the filter."""
        if row["id"] in self._ids or not self._filter.matches(row):
            return False
        position = self._position_for(row)
        self.beginInsertRows(QModelIndex(), position, position)
        self._rows.insert(position, row)
        self._ids.add(row["id"])
        self.endInsertRows()
        return True

    def set_filter(self, new_filter: HistoryFilter) -> None:
        if new_filter == self._filter:
            return
        self._filter = new_filter
        self.refresh()

    def filter(self) -> HistoryFilter:
        return self._filter

    def refresh(self) -> None:
        """Drop what is loaded and start again from the newest page."""
        self.beginResetModel()
        self._generation += 1
        self._rows.clear()
        self._ids.clear()
        self._oldest_id = None
        self._exhausted = False
        self._failed = False
        self._set_loading(False)
        self.endResetModel()
        self.fetchMore(QModelIndex())

    def load_all(self, then: Callable[[], None]) -> None:
        """Fetch every remaining page of the current filter, then call ``then``."""
        self._after_load.append(then)
        if self._exhausted:
            self._run_after_load()
        elif self._failed:
            self._failed = False
            self.fetchMore(QModelIndex())
        elif not self._loading:
            self.fetchMore(QModelIndex())

    def rows(self) -> list[HistoryRowJSON]:
        """The loaded rows in the order shown."""
        return list(self._rows)

    def row_at(self, row: int) -> HistoryRowJSON | None:
        return self._rows[row] if 0 <= row < len(self._rows) else None

    def is_loading(self) -> bool:
        return self._loading

    def is_complete(self) -> bool:
        return self._exhausted

    # -- internals

    def _run_after_load(self) -> None:
        callbacks, self._after_load = self._after_load, []
        for callback in callbacks:
            callback()

    def _set_loading(self, loading: bool) -> None:
        if loading != self._loading:
            self._loading = loading
            self.loadingChanged.emit(loading)

    def _default_sort(self) -> bool:
        return self._sort_column == self.TIME and self._sort_order == Qt.SortOrder.DescendingOrder

    def _position_for(self, row: HistoryRowJSON) -> int:
        key = self._sort_key(row, self._sort_column)
        descending = self._sort_order == Qt.SortOrder.DescendingOrder
        for i, other in enumerate(self._rows):
            other_key = self._sort_key(other, self._sort_column)
            if (key > other_key) if descending else (key < other_key):
                return i
        return len(self._rows)

    def _resort(self) -> None:
        self.layoutAboutToBeChanged.emit()
        before = self.persistentIndexList()
        ids_before = [
            (self._rows[i.row()]["id"], i.column()) if 0 <= i.row() < len(self._rows) else None
            for i in before
        ]
        self._rows.sort(
            key=lambda r: self._sort_key(r, self._sort_column),
            reverse=self._sort_order == Qt.SortOrder.DescendingOrder,
        )
        where = {r["id"]: n for n, r in enumerate(self._rows)}
        after = [
            self.index(where[ref[0]], ref[1]) if ref is not None else QModelIndex()
            for ref in ids_before
        ]
        self.changePersistentIndexList(before, after)
        self.layoutChanged.emit()
