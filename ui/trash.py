"""The deleted-files window: find what was deleted from the sync folders and bring it back.

Lists the server's trash through the agent (``trash.list``) and restores the
selected items one after another (``trash.restore``), with progress and a plain
message for each item that could not come back. An item whose place is taken
now is offered under a new name.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QFrame,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QStackedWidget,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from dropline.agent.control import ControlError
from dropline.agent.control.protocol import TrashItemJSON
from dropline.ui import format as fmt
from dropline.ui.models import TrashModel, folder_name
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

SEARCH_DELAY_MS = 250  # wait for a pause in typing before asking the agent
PLACE_TAKEN = "conflict"  # the agent's code for "something is already at that path"


def is_place_taken(error: ControlError) -> bool:
    return error.code == PLACE_TAKEN or "already" in error.message.lower()


def free_name(local: str) -> str:
    """A name beside ``local`` that nothing uses yet: ``q3 (restored).pdf``, ``(restored 2)``."""
    folder, name = os.path.split(local.rstrip("/\\"))
    stem, ext = os.path.splitext(name)
    if name.startswith(".") and not ext:
        stem, ext = name, ""
    n = 1
    while True:
        suffix = " (restored)" if n == 1 else f" (restored {n})"
        candidate = f"{stem}{suffix}{ext}"
        if not os.path.lexists(os.path.join(folder, candidate)):
            return candidate
        n += 1


def bad_name(name: str) -> str | None:
    """Why ``name`` cannot be a file name, or None."""
    if not name.strip():
        return "Type a name."
    if "/" in name or "\\" in name or name in (".", ".."):
        return "A name cannot contain / or \\."
    return None


class RenamePanel(QFrame):
    """Offers a new name for an item whose old place is taken: restore as, or skip."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("rename")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.label = QLabel()
        self.label.setWordWrap(True)
        self.label.setTextFormat(Qt.TextFormat.PlainText)
        self.name = QLineEdit()
        self.name.setAccessibleName("New name")
        self.error = QLabel()
        self.error.setStyleSheet(f"color: {ERROR_ACCENT};")
        self.error.hide()
        self.restore_as = make_primary(QPushButton("Restore &as this name"))
        self.skip = QPushButton("S&kip")
        row = QHBoxLayout()
        row.addWidget(QLabel("New name:"))
        row.addWidget(self.name, 1)
        row.addWidget(self.restore_as)
        row.addWidget(self.skip)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(12, 10, 12, 10)
        layout.addWidget(self.label)
        layout.addLayout(row)
        layout.addWidget(self.error)
        self.hide()


class TrashWindow(ToolWindow):
    """Deleted files and folders, searchable, restored in bulk with progress."""

    restoredItem = Signal(str)  # the local path an item came back to
    restoreFinished = Signal(int, int)  # restored, failed

    def __init__(self, call: AgentCall, parent: QWidget | None = None) -> None:
        super().__init__("Deleted files", parent)
        self.call = call
        self._generation = 0
        self._loading = False
        self._queue: list[TrashItemJSON] = []
        self._total = 0
        self._restored = 0
        self._failures: list[str] = []
        self._taken: list[TrashItemJSON] = []
        self.resize(900, 520)

        self.model = TrashModel(self)
        self.title = heading("Deleted files")
        self.subtitle = muted(
            "Files and folders deleted from your Dropline folders. Restoring one puts it back "
            "where it was, on this computer and on the server."
        )
        self.search = QLineEdit()
        self.search.setPlaceholderText("Search deleted files")
        self.search.setClearButtonEnabled(True)
        self.search.setAccessibleName("Search deleted files")
        self.folder = QComboBox()
        self.folder.addItem("All folders", None)
        self.folder.setAccessibleName("Folder")
        filters = QHBoxLayout()
        filters.setSpacing(6)
        filters.addWidget(self.search, 2)
        filters.addWidget(self.folder)

        self.table = QTableView()
        self.table.setModel(self.model)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setAlternatingRowColors(True)
        self.table.setShowGrid(False)
        self.table.setWordWrap(False)
        self.table.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.table.verticalHeader().hide()
        self.table.verticalHeader().setDefaultSectionSize(26)
        header = self.table.horizontalHeader()
        header.setDefaultAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)
        header.setSectionResizeMode(TrashModel.NAME, QHeaderView.ResizeMode.Stretch)
        header.resizeSection(TrashModel.LOCATION, 220)
        header.resizeSection(TrashModel.DELETED, 140)
        header.resizeSection(TrashModel.SIZE, 130)
        self.table.activated.connect(lambda _index: self.restore_selected())

        self.empty = EmptyState("Loading…", "")
        self.stack = QStackedWidget()
        self.stack.addWidget(self.empty)
        self.stack.addWidget(self.table)

        self.rename = RenamePanel()
        self.count_label = muted()
        self.progress = QProgressBar()
        self.progress.setTextVisible(True)
        self.progress.setFormat("%v of %m done")
        self.progress.setMaximumWidth(260)
        self.progress.hide()
        self.restore_button = make_primary(QPushButton("&Restore selected"))
        self.restore_button.setToolTip("Put the selected files back where they were")
        buttons = QHBoxLayout()
        buttons.addWidget(self.count_label, 1)
        buttons.addWidget(self.progress)
        buttons.addWidget(self.restore_button)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(16, 14, 16, 16)
        layout.setSpacing(8)
        layout.addWidget(self.connection_banner)
        layout.addWidget(self.banner)
        layout.addWidget(self.title)
        layout.addWidget(self.subtitle)
        layout.addLayout(filters)
        layout.addWidget(self.stack, 1)
        layout.addWidget(self.rename)
        layout.addLayout(buttons)

        self._search_timer = QTimer(self)
        self._search_timer.setSingleShot(True)
        self._search_timer.setInterval(SEARCH_DELAY_MS)
        self._search_timer.timeout.connect(self.reload)
        self.search.textChanged.connect(self._search_timer.start)
        self.search.returnPressed.connect(self.reload)
        self.folder.currentIndexChanged.connect(self.reload)
        self.restore_button.clicked.connect(self.restore_selected)
        self.rename.restore_as.clicked.connect(self._restore_renamed)
        self.rename.name.returnPressed.connect(self._restore_renamed)
        self.rename.skip.clicked.connect(self._skip_renamed)
        self.table.selectionModel().selectionChanged.connect(self._update_buttons)
        self.model.modelReset.connect(self._update_buttons)
        QShortcut(QKeySequence(QKeySequence.StandardKey.Find), self, self.search.setFocus)
        self.setTabOrder(self.search, self.folder)
        self.setTabOrder(self.folder, self.table)
        self._update_buttons()

    # -- what is listed

    def set_folders(self, folders: list[str]) -> None:
        """The sync folders offered in the folder filter (their local paths)."""
        current = self.folder.currentData()
        self.folder.blockSignals(True)
        self.folder.clear()
        self.folder.addItem("All folders", None)
        for local in folders:
            self.folder.addItem(folder_name(local), local)
            self.folder.setItemData(self.folder.count() - 1, local, Qt.ItemDataRole.ToolTipRole)
        self.folder.setCurrentIndex(max(0, self.folder.findData(current)))
        self.folder.blockSignals(False)

    def show_for(self, folder: str | None = None, search: str = "") -> None:
        """Filter to ``folder`` (a local root, or all) and ``search``, then list."""
        for widget in (self.folder, self.search):
            widget.blockSignals(True)
        index = self.folder.findData(folder) if folder else 0
        if index < 0:
            self.folder.addItem(folder_name(folder or ""), folder)
            index = self.folder.count() - 1
        self.folder.setCurrentIndex(index)
        self.search.setText(search)
        for widget in (self.folder, self.search):
            widget.blockSignals(False)
        self.reload()

    def reload(self, *_args: Any) -> None:
        self._search_timer.stop()
        self._generation += 1
        generation = self._generation
        self._loading = True
        args: dict[str, Any] = {}
        if self.folder.currentData():
            args["folder"] = self.folder.currentData()
        if self.search.text().strip():
            args["search"] = self.search.text().strip()
        self._show_counts()

        def done(result: dict[str, Any]) -> None:
            if generation == self._generation:
                self._loading = False
                self.model.set_items(result.get("items", []))
                self._show_counts()

        def failed(error: ControlError) -> None:
            if generation == self._generation:
                self._loading = False
                self.model.set_items([])
                self._show_counts(fmt.sentence(error.message))

        self.call("trash.list", args or None, on_done=done, on_error=failed)

    # -- restoring

    def selected_items(self) -> list[TrashItemJSON]:
        rows = sorted(i.row() for i in self.table.selectionModel().selectedRows())
        return [item for row in rows if (item := self.model.item_at(row)) is not None]

    def select_local(self, local: str) -> bool:
        for n, item in enumerate(self.model.items()):
            if item["local"] == local:
                self.table.selectRow(n)
                return True
        return False

    def is_restoring(self) -> bool:
        return bool(self._total)

    def restore_selected(self) -> None:
        items = self.selected_items()
        if not items or self.is_restoring():
            return
        self._queue = list(items)
        self._total = len(items)
        self._restored = 0
        self._failures = []
        self._taken = []
        self.rename.hide()
        self.banner.hide()
        self.progress.setRange(0, self._total)
        self.progress.setValue(0)
        self.progress.setVisible(self._total > 1)
        self._update_buttons()
        self._next()

    def _next(self) -> None:
        if not self._queue:
            self._finish()
            return
        item = self._queue.pop(0)
        if self._total == 1:
            self.banner.show_message(f"Restoring {item['name']}…", closable=False)

        def done(_result: dict[str, Any]) -> None:
            self._restored += 1
            self.restoredItem.emit(item["local"])
            self._step()

        def failed(error: ControlError) -> None:
            if is_place_taken(error):
                self._taken.append(item)
            else:
                self._failures.append(f"{item['name']}: {fmt.sentence(error.message)}")
            self._step()

        self.call("trash.restore", {"id": item["id"]}, on_done=done, on_error=failed)

    def _step(self) -> None:
        self.progress.setValue(self.progress.value() + 1)
        self._next()

    def _finish(self) -> None:
        total, restored, failures = self._total, self._restored, self._failures
        self._total = 0
        self.progress.hide()
        if failures:
            head = (
                f"Restored {restored} of {fmt.plural(total, 'item')}. "
                if restored
                else f"Could not restore {fmt.plural(len(failures), 'item')}. "
            )
            self.banner.show_message(head + " ".join(failures), ERROR_ACCENT)
        elif restored:
            self.banner.show_message(
                f"Restored {fmt.plural(restored, 'item')}. They come back into your folders "
                "in a moment.",
                OK_ACCENT,
            )
        else:
            self.banner.hide()  # only taken places: the rename panel says it
        self.restoreFinished.emit(restored, len(failures))
        self._offer_new_name()
        self.reload()

    def _offer_new_name(self) -> None:
        if not self._taken:
            self.rename.hide()
            self._update_buttons()
            return
        item = self._taken[0]
        self.rename.label.setText(
            f"Something is already at {fmt.home_path(item['local'])}. "
            f"Restore {item['name']} under a new name, or skip it:"
        )
        self.rename.name.setText(free_name(item["local"]))
        self.rename.error.hide()
        self.rename.show()
        self.rename.name.setFocus()
        self.rename.name.selectAll()
        self._update_buttons()

    def _restore_renamed(self) -> None:
        if not self._taken:
            return
        item = self._taken[0]
        name = self.rename.name.text().strip()
        problem = bad_name(name)
        if problem is not None:
            self._rename_error(problem)
            return
        target = os.path.join(os.path.dirname(item["local"].rstrip("/\\")), name)
        self.rename.restore_as.setEnabled(False)

        def done(_result: dict[str, Any]) -> None:
            self.rename.restore_as.setEnabled(True)
            self._taken.pop(0)
            self.banner.show_message(
                f"Restored {item['name']} as {name}. It comes back into your folder in a moment.",
                OK_ACCENT,
            )
            self.restoredItem.emit(target)
            self._offer_new_name()
            self.reload()

        def failed(error: ControlError) -> None:
            self.rename.restore_as.setEnabled(True)
            self._rename_error(fmt.sentence(error.message))

        self.call(
            "trash.restore", {"id": item["id"], "path": target}, on_done=done, on_error=failed
        )

    def _rename_error(self, text: str) -> None:
        self.rename.error.setText(text)
        self.rename.error.show()

    def _skip_renamed(self) -> None:
        if self._taken:
            self._taken.pop(0)
        self._offer_new_name()

    # -- state

    def _show_counts(self, error: str = "") -> None:
        n = self.model.rowCount()
        filtered = bool(self.search.text().strip() or self.folder.currentData())
        if n:
            self.stack.setCurrentWidget(self.table)
        elif self._loading:
            self.empty.set_text("Loading…", "")
            self.stack.setCurrentWidget(self.empty)
        elif error:
            self.empty.set_text("The deleted files could not be listed", error)
            self.stack.setCurrentWidget(self.empty)
        elif filtered:
            self.empty.set_text("No matching deleted files", "Try a shorter search or all folders.")
            self.stack.setCurrentWidget(self.empty)
        else:
            self.empty.set_text(
                "Nothing deleted",
                "Files and folders you delete from your Dropline folders are kept here for a "
                "while, so you can bring them back.",
            )
            self.stack.setCurrentWidget(self.empty)
        self.count_label.setText(fmt.plural(n, "deleted item") if n else "")
        self._update_buttons()

    def _update_buttons(self, *_args: Any) -> None:
        n = len(self.selected_items())
        self.restore_button.setEnabled(bool(n) and not self.is_restoring())
        self.restore_button.setText(f"&Restore {n} items" if n > 1 else "&Restore selected")
