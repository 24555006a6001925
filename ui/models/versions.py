"""The versions table: one file's revisions on the server, newest first, the current one marked."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtGui import QFont

from dropline.agent.control.protocol import RevisionJSON
from dropline.ui import format as fmt
from dropline.ui.models._base import Index, RowRole, TableModel

AGENT_CLIENT = "dropline-agent/"


def client_words(client: str | None) -> str:
    """Which program published a revision, as a person would say it."""
    if not client:
        return "Unknown"
    if client.startswith(AGENT_CLIENT):
        return f"Desktop app {client[len(AGENT_CLIENT) :]}".rstrip()
    return {"web": "Web browser", "api_key": "API key", "oauth": "App (OAuth)"}.get(client, client)


def who_words(revision: RevisionJSON) -> str:
    user = revision.get("user")
    return user["email"] if user else "Unknown"


class VersionsModel(TableModel):
    """The revisions of one file, as listed by the agent; the current one is marked."""

    COLUMNS = ("When", "Who", "Size", "Client")
    WHEN, WHO, SIZE, CLIENT = range(4)
    RIGHT_ALIGNED = frozenset({SIZE})

    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self._rows: list[RevisionJSON] = []

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or not 0 <= index.row() < len(self._rows):
            return None
        revision = self._rows[index.row()]
        col = index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            if col == self.WHEN:
                when = fmt.timestamp(revision["created_at"])
                return f"{when}  (current)" if revision["current"] else when
            if col == self.WHO:
                return who_words(revision)
            if col == self.SIZE:
                return fmt.size(revision["size"])
            if col == self.CLIENT:
                return client_words(revision["client"])
            return None
        if role == Qt.ItemDataRole.ToolTipRole:
            if col == self.CLIENT:
                return revision["client"] or None
            if col == self.SIZE:
                return f"{revision['size']:,} bytes\nSHA-256 {revision['sha256']}"
            if col == self.WHEN:
                return "The version in your folder now" if revision["current"] else None
            return None
        if role == Qt.ItemDataRole.FontRole and revision["current"]:
            font = QFont()
            font.setBold(True)
            return font
        if role == Qt.ItemDataRole.TextAlignmentRole:
            return self.alignment(col)
        if role == RowRole:
            return revision
        return None

    def set_revisions(self, revisions: Sequence[RevisionJSON]) -> None:
        self.beginResetModel()
        self._rows = sorted(revisions, key=lambda r: -r["created_at"])
        self.endResetModel()

    def revisions(self) -> list[RevisionJSON]:
        return list(self._rows)

    def revision_at(self, row: int) -> RevisionJSON | None:
        return self._rows[row] if 0 <= row < len(self._rows) else None
