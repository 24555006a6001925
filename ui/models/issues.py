"""The issues table: per-file problems with what to do about each."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from PySide6.QtCore import QModelIndex, Qt

from dropline.agent.control.protocol import IssueJSON
from dropline.ui import format as fmt
from dropline.ui.models._base import (
    CONFLICT_COLOUR,
    Index,
    RowRole,
    SortRole,
    TableModel,
    file_name,
    folder_name,
)


class IssuesModel(TableModel):
    """Per-file problems the agent reports, each with what to do about it."""

    COLUMNS = ("File", "Folder", "Problem", "What to do", "Since")
    FILE, FOLDER, PROBLEM, HINT, SINCE = range(5)

    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self._rows: list[IssueJSON] = []

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or not 0 <= index.row() < len(self._rows):
            return None
        issue = self._rows[index.row()]
        col = index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            if col == self.FILE:
                return file_name(issue["path"]) if issue["path"] else folder_name(issue["folder"])
            if col == self.FOLDER:
                return folder_name(issue["folder"])
            if col == self.PROBLEM:
                return issue["message"]
            if col == self.HINT:
                return issue["hint"]
            if col == self.SINCE:
                return fmt.timestamp(issue["since"])
            return None
        if role == Qt.ItemDataRole.ToolTipRole:
            if col == self.FILE:
                return issue["path"]
            if col == self.FOLDER:
                return issue["folder"]
            if col in (self.PROBLEM, self.HINT):
                return f"{issue['message']}\n{issue['hint']}"
            return None
        if role == Qt.ItemDataRole.ForegroundRole and col == self.PROBLEM:
            return CONFLICT_COLOUR if issue["kind"] == "conflict" else None
        if role == SortRole:
            return {
                self.FILE: issue["path"].casefold(),
                self.FOLDER: issue["folder"].casefold(),
                self.PROBLEM: issue["message"],
                self.HINT: issue["hint"],
                self.SINCE: issue["since"],
            }.get(col)
        if role == RowRole:
            return issue
        return None

    def set_issues(self, issues: Sequence[IssueJSON]) -> None:
        self.beginResetModel()
        self._rows = sorted(issues, key=lambda i: (-i["since"], i["id"]))
        self.endResetModel()

    def add(self, issue: IssueJSON) -> None:
        """A raised issue; one already listed under the same id is replaced."""
        for n, existing in enumerate(self._rows):
            if existing["id"] == issue["id"]:
                self._rows[n] = issue
                self._row_changed(n)
                return
        self.beginInsertRows(QModelIndex(), 0, 0)
        self._rows.insert(0, issue)
        self.endInsertRows()

    def remove(self, issue_id: int) -> bool:
        for n, existing in enumerate(self._rows):
            if existing["id"] == issue_id:
                self.beginRemoveRows(QModelIndex(), n, n)
                del self._rows[n]
                self.endRemoveRows()
                return True
        return False

    def issues(self) -> list[IssueJSON]:
        return list(self._rows)

    def issue_at(self, row: int) -> IssueJSON | None:
        return self._rows[row] if 0 <= row < len(self._rows) else None
