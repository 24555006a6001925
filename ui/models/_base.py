"""What the table models share: the row-per-record base class, custom roles, names."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, Qt
from PySide6.QtGui import QColor

Index = QModelIndex | QPersistentModelIndex
Clock = Callable[[], float]

# The raw record behind a row, for views and actions (open, retry, export).
RowRole = Qt.ItemDataRole.UserRole + 1
# The value a column sorts by, for views that sort through a proxy.
SortRole = Qt.ItemDataRole.UserRole + 2
# Transfers: fraction done (0..1), and opacity while a finished row fades out.
ProgressRole = Qt.ItemDataRole.UserRole + 3
OpacityRole = Qt.ItemDataRole.UserRole + 4

# Readable on light and dark backgrounds alike.
FAILED_COLOUR = QColor("#d93025")
CONFLICT_COLOUR = QColor("#e37400")

DIRECTION_WORDS = {"up": "Upload", "down": "Download"}
RESULT_WORDS = {"ok": "Done", "failed": "Failed", "conflict": "Conflict", "skipped": "Skipped"}


def folder_name(folder: str) -> str:
    """The last part of a sync folder's local path, as people name their folders."""
    return os.path.basename(folder.rstrip("/\\")) or folder


def display_path(path: str) -> str:
    """A path inside a sync folder as people read it: ``/sub/q3.pdf`` -> ``sub/q3.pdf``."""
    return path.lstrip("/") or path


def file_name(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[-1] or path


class TableModel(QAbstractTableModel):
    """A flat table: one record per row, fixed named columns."""

    COLUMNS: tuple[str, ...] = ()
    RIGHT_ALIGNED: frozenset[int] = frozenset()  # numeric columns, header and cells alike
    _rows: list[Any]

    def alignment(self, column: int) -> int:
        side = (
            Qt.AlignmentFlag.AlignRight
            if column in self.RIGHT_ALIGNED
            else Qt.AlignmentFlag.AlignLeft
        )
        return int(side | Qt.AlignmentFlag.AlignVCenter)

    def rowCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008 - Qt's own default
        return 0 if parent.isValid() else len(self._rows)

    def columnCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.COLUMNS)

    def headerData(
        self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole
    ) -> Any:
        if orientation != Qt.Orientation.Horizontal or not 0 <= section < len(self.COLUMNS):
            return None
        if role == Qt.ItemDataRole.DisplayRole:
            return self.COLUMNS[section]
        if role == Qt.ItemDataRole.TextAlignmentRole:
            return self.alignment(section)
        return None

    def _row_changed(self, n: int) -> None:
        self.dataChanged.emit(self.index(n, 0), self.index(n, len(self.COLUMNS) - 1))
