"""The version history of one file: its revisions on the server, restore one, or open a copy.

The window asks the agent itself (``versions.list``, ``versions.restore``,
``versions.open_copy``) through the call it is given; a restored version reaches
the folder through ordinary sync, so the window only says that it will.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QMessageBox,
    QPushButton,
    QStackedWidget,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from dropline.agent.control import ControlError
from dropline.agent.control.protocol import RevisionJSON
from dropline.ui import format as fmt
from dropline.ui.desktop import Opener, open_path
from dropline.ui.models import VersionsModel
from dropline.ui.models.versions import who_words
from dropline.ui.widgets import (
    ERROR_ACCENT,
    OK_ACCENT,
    EmptyState,
    ToolWindow,
    heading,
    make_primary,
    muted,
)
from dropline.ui.workers import AgentCall

log = logging.getLogger(__name__)


def version_words(revision: RevisionJSON) -> str:
    """``the version from 2025-11-21 14:05 (ann@example.com)``, to name it in messages."""
    return f"the version from {fmt.timestamp(revision['created_at'])} ({who_words(revision)})"


class VersionsWindow(ToolWindow):
    """One window for whichever file was asked about last; ``show_file`` switches it."""

    restored = Signal(str)  # the rev whose content became current
    copyOpened = Signal(str)  # the copy's local path

    def __init__(
        self, call: AgentCall, opener: Opener = open_path, parent: QWidget | None = None
    ) -> None:
        super().__init__("Version history", parent)
        self.call = call
        self.opener = opener
        self.path = ""  # the local file shown
        self.remote = ""
        self.confirm_box: QMessageBox | None = None
        self._generation = 0  # answers for a file no longer shown are dropped
        self._loading = False
        self._busy = False
        self.resize(720, 420)

        self.model = VersionsModel(self)
        self.title = heading("Version history")
        self.location = muted()
        self.location.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        self.table = QTableView()
        self.table.setModel(self.model)
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
        header.setSectionResizeMode(VersionsModel.WHO, QHeaderView.ResizeMode.Stretch)
        header.resizeSection(VersionsModel.WHEN, 210)
        header.resizeSection(VersionsModel.SIZE, 90)
        header.resizeSection(VersionsModel.CLIENT, 150)
        self.table.activated.connect(lambda _index: self.open_copy())  # Enter or double-click

        self.empty = EmptyState("Loading…", "")
        self.stack = QStackedWidget()
        self.stack.addWidget(self.empty)
        self.stack.addWidget(self.table)

        self.count_label = muted()
        self.open_copy_button = QPushButton("&Open a copy")
        self.open_copy_button.setToolTip(
            "Open this version as a separate copy; the file in your folder stays as it is"
        )
        self.restore_button = make_primary(QPushButton("&Restore this version"))
        self.restore_button.setToolTip(
            "Make this version the current one; the version it replaces stays in the history"
        )
        buttons = QHBoxLayout()
        buttons.addWidget(self.count_label, 1)
        buttons.addWidget(self.open_copy_button)
        buttons.addWidget(self.restore_button)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(16, 14, 16, 16)
        layout.setSpacing(8)
        layout.addWidget(self.connection_banner)
        layout.addWidget(self.banner)
        layout.addWidget(self.title)
        layout.addWidget(self.location)
        layout.addWidget(self.stack, 1)
        layout.addLayout(buttons)

        self.open_copy_button.clicked.connect(self.open_copy)
        self.restore_button.clicked.connect(self.confirm_restore)
        self.table.selectionModel().selectionChanged.connect(self._update_buttons)
        self.model.modelReset.connect(self._update_buttons)
        self._update_buttons()

    # -- which file

    def show_file(self, path: str) -> None:
        """Show the versions of the local file ``path`` (inside a sync folder)."""
        if path != self.path:
            self.banner.hide()
        self.path = path
        self.remote = ""
        name = os.path.basename(path.rstrip("/\\")) or path
        self.title.setText(name)
        self.title.setAccessibleName(f"Version history of {name}")
        self.location.setText(fmt.home_path(os.path.dirname(path)))
        self.reload()

    def reload(self) -> None:
        self._generation += 1
        generation = self._generation
        self._loading = True
        self.model.set_revisions([])
        self._show_empty("Loading…", "")

        def done(result: dict[str, Any]) -> None:
            if generation != self._generation:
                return
            self._loading = False
            self.remote = str(result.get("file", {}).get("remote", ""))
            self.model.set_revisions(result.get("revisions", []))
            self._after_load()

        def failed(error: ControlError) -> None:
            if generation != self._generation:
                return
            self._loading = False
            self._show_empty("No version history", fmt.sentence(error.message))
            self._update_buttons()

        self.call("versions.list", {"path": self.path}, on_done=done, on_error=failed)

    def _after_load(self) -> None:
        n = self.model.rowCount()
        if not n:
            self._show_empty("No versions yet", "This file has not reached the server yet.")
        else:
            self.stack.setCurrentWidget(self.table)
            self.count_label.setText(
                "Only the current version is kept" if n == 1 else f"{n} versions kept"
            )
            # Start on the newest earlier version: what someone opening this usually wants.
            self.table.selectRow(1 if n > 1 else 0)
        self._update_buttons()

    def _show_empty(self, title: str, text: str) -> None:
        self.empty.set_text(title, text)
        self.stack.setCurrentWidget(self.empty)
        self.count_label.setText("")

    # -- actions

    def selected_revision(self) -> RevisionJSON | None:
        rows = self.table.selectionModel().selectedRows()
        return self.model.revision_at(rows[0].row()) if rows else None

    def select_rev(self, rev: str) -> bool:
        for n, revision in enumerate(self.model.revisions()):
            if revision["rev"] == rev:
                self.table.selectRow(n)
                return True
        return False

    def confirm_restore(self) -> None:
        """Ask first (window-modal, so the tray stays responsive), then restore."""
        revision = self.selected_revision()
        if revision is None or revision["current"] or self._busy:
            return
        box = QMessageBox(self)
        box.setIcon(QMessageBox.Icon.Question)
        box.setWindowTitle("Restore this version - Dropline")
        box.setText(f"Restore {version_words(revision)}?")
        box.setInformativeText(
            f"{self.title.text()} in your folder becomes this version. The version it "
            "replaces stays in the history, so you can go back to it."
        )
        restore = box.addButton("Restore", QMessageBox.ButtonRole.AcceptRole)
        box.addButton(QMessageBox.StandardButton.Cancel)
        box.setDefaultButton(restore)
        box.setWindowModality(Qt.WindowModality.WindowModal)

        def answered(button: object) -> None:
            self.confirm_box = None
            box.deleteLater()
            if button is restore:
                self.restore(revision)

        box.buttonClicked.connect(answered)
        self.confirm_box = box
        box.open()

    def restore(self, revision: RevisionJSON) -> None:
        path, words = self.path, version_words(revision)
        self._set_busy(True)
        self.banner.show_message(f"Restoring {words}…", closable=False)

        def done(_result: dict[str, Any]) -> None:
            self._set_busy(False)
            if path != self.path:
                return
            self.banner.show_message(
                f"Restored {words}. Dropline brings it into your folder in a moment.", OK_ACCENT
            )
            self.restored.emit(revision["rev"])
            self.reload()

        def failed(error: ControlError) -> None:
            self._set_busy(False)
            self.banner.show_message(
                f"Could not restore {words}: {fmt.sentence(error.message)}", ERROR_ACCENT
            )

        self.call(
            "versions.restore",
            {"path": path, "rev": revision["rev"]},
            on_done=done,
            on_error=failed,
        )

    def open_copy(self) -> None:
        """Download the selected version beside (never into) the folders, then open it."""
        revision = self.selected_revision()
        if revision is None or self._busy:
            return
        words = version_words(revision)
        self._set_busy(True)
        self.banner.show_message(f"Fetching {words}…", closable=False)

        def done(result: dict[str, Any]) -> None:
            self._set_busy(False)
            copy = Path(str(result.get("copy", "")))
            if not self.opener(copy):
                self.banner.show_message(
                    f"The copy is at {copy}, but no program on this computer opened it.",
                    ERROR_ACCENT,
                )
                return
            self.banner.show_message(f"Opened a copy of {words}: {copy.name}", OK_ACCENT)
            self.copyOpened.emit(str(copy))

        def failed(error: ControlError) -> None:
            self._set_busy(False)
            self.banner.show_message(
                f"Could not open {words}: {fmt.sentence(error.message)}", ERROR_ACCENT
            )

        self.call(
            "versions.open_copy",
            {"path": self.path, "rev": revision["rev"]},
            on_done=done,
            on_error=failed,
        )

    # -- state

    def _set_busy(self, busy: bool) -> None:
        self._busy = busy
        self._update_buttons()

    def _update_buttons(self, *_args: Any) -> None:
        revision = self.selected_revision()
        ready = revision is not None and not self._busy
        self.open_copy_button.setEnabled(ready)
        self.restore_button.setEnabled(ready and revision is not None and not revision["current"])
        if revision is not None and revision["current"]:
            self.restore_button.setToolTip("This is already the current version")
        else:
            self.restore_button.setToolTip(
                "Make this version the current one; the version it replaces stays in the history"
            )
