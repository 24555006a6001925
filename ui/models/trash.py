"""The deleted-files table: what people deleted from the sync folders, newest deletion first."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from PySide6.QtCore import Qt

from dropline.agent.control.protocol import TrashItemJSON
from dropline.ui import format as fmt
from dropline.ui.models._base import CONFLICT_COLOUR, Index, RowRole, TableModel, folder_name


def original_location(item: TrashItemJSON) -> str:
    """The folder it was deleted from, as people name it: ``Reports/Logo refresh``."""
    root = item["folder"].rstrip("/\\")
    parent = os.path.dirname(item["local"].rstrip("/\\"))
    name = folder_name(root)
    if parent == root or not parent.startswith(root + os.sep):
        return name
    return f"{name}/{parent[len(root) + 1 :]}"


def size_words(item: TrashItemJSON) -> str:
    if item["type"] == "folder":
        return f"{fmt.size(item['size'])}, {fmt.plural(item['files'], 'file')}"
    return fmt.size(item["size"])


class TrashModel(TableModel):
    """Deleted files and folders the agent lists from the server's trash."""

    COLUMNS = ("Name", "Original location", "Deleted", "Size")
    NAME, LOCATION, DELETED, SIZE = range(4)
    RIGHT_ALIGNED = frozenset({SIZE})

    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self._rows: list[TrashItemJSON] = []

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or not 0 <= index.row() < len(self._rows):
            return None
        item = self._rows[index.row()]
        col = index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            if col == self.NAME:
                name = f"{item['name']}/" if item["type"] == "folder" else item["name"]
                return f"{name}  (name in use now)" if item["path_taken"] else name
            if col == self.LOCATION:
                return original_location(item)
            if col == self.DELETED:
                return fmt.timestamp(item["trashed_at"])
            if col == self.SIZE:
                return size_words(item)
            return None
        if role == Qt.ItemDataRole.ToolTipRole:
            if col == self.NAME and item["path_taken"]:
                return (
                    f"Something else is at {fmt.home_path(item['local'])} now: "
                    "restore it under a new name"
                )
            if col in (self.NAME, self.LOCATION):
                return fmt.home_path(item["local"])
            return None
        if role == Qt.ItemDataRole.ForegroundRole and col == self.NAME and item["path_taken"]:
            return CONFLICT_COLOUR
        if role == Qt.ItemDataRole.TextAlignmentRole:
            return self.alignment(col)
        if role == RowRole:
            return item
        return None

    def set_items(self, items: Sequence[TrashItemJSON]) -> None:
        self.beginResetModel()
        self._rows = sorted(items, key=lambda i: -i["trashed_at"])
        self.endResetModel()

    def items(self) -> list[TrashItemJSON]:
        return list(self._rows)

    def item_at(self, row: int) -> TrashItemJSON | None:
        return self._rows[row] if 0 <= row < len(self._rows) else None
