"""The issues window: each file Dropline could not sync, in plain words, with what to do."""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFrame,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QStackedWidget,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from dropline.agent.control.protocol import IssueJSON
from dropline.ui.desktop import Opener, containing_folder, local_file, open_or_explain, open_path
from dropline.ui.models import IssuesModel, display_path
from dropline.ui.status import attention_words
from dropline.ui.widgets import ERROR_ACCENT, EmptyState, ToolWindow, heading, muted


def versions(issue: IssueJSON) -> list[str]:
    """The file and its related versions, each once (the agent may list the file itself)."""
    return list(dict.fromkeys([issue["path"], *issue["related_paths"]]))


# A conflict's three ways out: (keep, button text, what it does).
KEEP_CHOICES = (
    (
        "both",
        "&Keep both",
        "Keep the file and your conflicted copy side by side, and hide this issue",
    ),
    (
        "mine",
        "Keep &mine",
        "Your conflicted copy becomes the file; the other version stays in the file's "
        "version history",
    ),
    (
        "theirs",
        "Keep &theirs",
        "Keep the file as it is and remove your conflicted copy; it goes to Deleted files, "
        "so you can bring it back",
    ),
)


class IssuesWindow(ToolWindow):
    retryRequested = Signal(int)
    dismissRequested = Signal(int)
    resolveRequested = Signal(int, str)  # issue id, "both" | "mine" | "theirs"

    def __init__(
        self, model: IssuesModel, opener: Opener = open_path, parent: QWidget | None = None
    ) -> None:
        super().__init__("Issues", parent)
        self.model = model
        self.opener = opener
        self.resize(900, 520)

        self.title = heading("Issues")
        self.subtitle = muted("Files Dropline could not sync, and what to do about each one.")

        self.table = QTableView()
        self.table.setModel(model)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setAlternatingRowColors(True)
        self.table.setShowGrid(False)
        self.table.setWordWrap(False)
        self.table.verticalHeader().hide()
        self.table.verticalHeader().setDefaultSectionSize(26)
        header = self.table.horizontalHeader()
        header.setDefaultAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)
        header.setSectionResizeMode(IssuesModel.PROBLEM, QHeaderView.ResizeMode.Stretch)
        header.resizeSection(IssuesModel.FILE, 170)
        header.resizeSection(IssuesModel.FOLDER, 100)
        header.resizeSection(IssuesModel.HINT, 220)
        header.resizeSection(IssuesModel.SINCE, 130)

        self.empty = EmptyState(
            "No issues", "Everything Dropline could sync has been synced. Problems appear here."
        )
        self.stack = QStackedWidget()
        self.stack.addWidget(self.empty)
        self.stack.addWidget(self.table)

        # The selected issue in full: its message, what to do, and a conflict's versions.
        self.details = QFrame()
        self.details.setFrameShape(QFrame.Shape.StyledPanel)
        details = QVBoxLayout(self.details)
        details.setContentsMargins(12, 10, 12, 10)
        self.detail_file = QLabel()
        self.detail_file.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        font = self.detail_file.font()
        font.setBold(True)
        self.detail_file.setFont(font)
        self.detail_message = QLabel()
        self.detail_message.setWordWrap(True)
        self.detail_hint = QLabel()
        self.detail_hint.setWordWrap(True)
        self.detail_hint.setTextFormat(Qt.TextFormat.RichText)
        self.detail_versions = muted()
        for label in (
            self.detail_file,
            self.detail_message,
            self.detail_hint,
            self.detail_versions,
        ):
            details.addWidget(label)

        self.retry = QPushButton("&Retry")
        self.open_file = QPushButton("&Open file")
        self.open_both = QPushButton("Open &both versions")
        self.open_folder = QPushButton("Show in &folder")
        self.dismiss = QPushButton("&Dismiss")
        self.dismiss.setToolTip("Hide this issue; it comes back if the problem happens again")
        self.keep: dict[str, QPushButton] = {}
        buttons = QHBoxLayout()
        for keep, text, tip in KEEP_CHOICES:
            button = QPushButton(text)
            button.setToolTip(tip)
            button.setAccessibleDescription(tip)
            button.clicked.connect(lambda _=False, k=keep: self._resolve(k))
            self.keep[keep] = button
            buttons.addWidget(button)
        buttons.addStretch(1)
        for button in (self.retry, self.open_file, self.open_both, self.open_folder, self.dismiss):
            buttons.addWidget(button)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(16, 14, 16, 16)
        layout.setSpacing(8)
        layout.addWidget(self.connection_banner)
        layout.addWidget(self.banner)
        layout.addWidget(self.title)
        layout.addWidget(self.subtitle)
        layout.addWidget(self.stack, 1)
        layout.addWidget(self.details)
        layout.addLayout(buttons)

        self.retry.clicked.connect(self._retry)
        self.dismiss.clicked.connect(self._dismiss)
        self.open_file.clicked.connect(self.open_selected_file)
        self.open_both.clicked.connect(self.open_selected_versions)
        self.open_folder.clicked.connect(self.open_selected_folder)
        self.table.selectionModel().selectionChanged.connect(self._selection_changed)
        self.table.activated.connect(
            lambda _index: self.open_selected_file()
        )  # Enter or double-click
        for signal in (model.rowsInserted, model.rowsRemoved, model.modelReset, model.dataChanged):
            signal.connect(self._model_changed)
        QShortcut(QKeySequence(QKeySequence.StandardKey.Delete), self.table, self._dismiss)
        self._model_changed()

    def selected_issue(self) -> IssueJSON | None:
        rows = self.table.selectionModel().selectedRows()
        return self.model.issue_at(rows[0].row()) if rows else None

    def select_first(self) -> None:
        if self.model.rowCount():
            self.table.selectRow(0)

    def _retry(self) -> None:
        issue = self.selected_issue()
        if issue is not None:
            self.banner.show_message(f"Trying {Path(issue['path']).name or issue['path']} again…")
            self.retryRequested.emit(issue["id"])

    def _dismiss(self) -> None:
        issue = self.selected_issue()
        if issue is not None:
            self.dismissRequested.emit(issue["id"])

    def _resolve(self, keep: str) -> None:
        issue = self.selected_issue()
        if issue is not None and issue["kind"] == "conflict":
            self.banner.show_message(f"Settling {Path(issue['path']).name}…", closable=False)
            self.resolveRequested.emit(issue["id"], keep)

    def open_selected_file(self) -> None:
        issue = self.selected_issue()
        if issue is not None:
            self._open(local_file(issue["folder"], issue["path"]))

    def open_selected_versions(self) -> None:
        issue = self.selected_issue()
        if issue is None:
            return
        for path in versions(issue):
            self._open(local_file(issue["folder"], path))

    def open_selected_folder(self) -> None:
        issue = self.selected_issue()
        if issue is not None:
            self._open(containing_folder(issue["folder"], issue["path"]))

    def _open(self, path: Path | None) -> None:
        open_or_explain(path, self.opener, lambda m: self.banner.show_message(m, ERROR_ACCENT))

    def _model_changed(self, *_args: Any) -> None:
        count = self.model.rowCount()
        self.stack.setCurrentWidget(self.table if count else self.empty)
        self.title.setText(attention_words(count) if count else "Issues")
        if count and not self.table.selectionModel().hasSelection():
            self.table.selectRow(0)
        self._selection_changed()

    def _selection_changed(self, *_args: Any) -> None:
        issue = self.selected_issue()
        for button in (self.retry, self.open_file, self.open_folder, self.dismiss):
            button.setEnabled(issue is not None)
        conflict = (
            issue is not None and issue["kind"] == "conflict" and bool(issue["related_paths"])
        )
        self.open_both.setVisible(conflict)
        for button in self.keep.values():
            button.setVisible(conflict)
        self.retry.setVisible(not conflict)  # nothing to retry: both versions are on disk
        self.details.setVisible(issue is not None)
        if issue is None:
            return
        self.detail_file.setText(display_path(issue["path"]) or issue["folder"])
        self.detail_message.setText(issue["message"])
        self.detail_hint.setText(
            f"<b>What to do:</b> {escape(issue['hint'])}" if issue["hint"] else ""
        )
        if conflict:
            listed = "\n".join(f"• {display_path(p)}" for p in versions(issue))
            self.detail_versions.setText(f"Both versions were kept:\n{listed}")
            self.detail_versions.show()
        else:
            self.detail_versions.hide()
