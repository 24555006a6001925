"""The history window: every transfer, filtered, searched, sorted, opened and exported."""

from __future__ import annotations

import logging
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any

from PySide6.QtCore import QDate, QModelIndex, QPoint, Qt, QTimer, Signal
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QDateEdit,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QMenu,
    QPushButton,
    QStackedWidget,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from dropline.agent.control.protocol import HistoryRowJSON
from dropline.ui import format as fmt
from dropline.ui.desktop import Opener, containing_folder, local_file, open_or_explain, open_path
from dropline.ui.export import write_history_csv
from dropline.ui.models import HistoryFilter, HistoryModel, folder_name
from dropline.ui.widgets import ERROR_ACCENT, OK_ACCENT, EmptyState, ToolWindow, muted

log = logging.getLogger(__name__)

SEARCH_DELAY_MS = 250  # wait for a pause in typing before asking the agent

RANGES = ("Any time", "Today", "Last 7 days", "Last 30 days", "Between dates")


def _start_of(day: date) -> float:
    return datetime.combine(day, time.min).timestamp()


def date_range(
    choice: str, first: date, last: date, today: date
) -> tuple[float | None, float | None]:
    """(since, until) in epoch seconds for a range choice; until is exclusive."""
    if choice == "Today":
        return _start_of(today), None
    if choice == "Last 7 days":
        return _start_of(today - timedelta(days=6)), None
    if choice == "Last 30 days":
        return _start_of(today - timedelta(days=29)), None
    if choice == "Between dates":
        lo, hi = min(first, last), max(first, last)
        return _start_of(lo), _start_of(hi + timedelta(days=1))
    return None, None


class HistoryWindow(ToolWindow):
    exported = Signal(str, int)  # path, rows written
    exportFailed = Signal(str)
    versionsRequested = Signal(str)  # a local file's path
    trashRequested = Signal(object, str)  # a sync folder's local path or None, a search

    def __init__(
        self, model: HistoryModel, opener: Opener = open_path, parent: QWidget | None = None
    ) -> None:
        super().__init__("History", parent)
        self.model = model
        self.opener = opener
        self._load_error = False
        self.resize(980, 560)

        self.search = QLineEdit()
        self.search.setPlaceholderText("Search file names")
        self.search.setClearButtonEnabled(True)
        self.search.setAccessibleName("Search file names")
        self.folder = QComboBox()
        self.folder.addItem("All folders", None)
        self.folder.setAccessibleName("Folder")
        self.direction = QComboBox()
        for text, value in (
            ("Uploads and downloads", None),
            ("Uploads", "up"),
            ("Downloads", "down"),
        ):
            self.direction.addItem(text, value)
        self.direction.setAccessibleName("Direction")
        self.result = QComboBox()
        for text, value in (
            ("Any result", None),
            ("Done", "ok"),
            ("Failed", "failed"),
            ("Conflict", "conflict"),
            ("Skipped", "skipped"),
        ):
            self.result.addItem(text, value)
        self.result.setAccessibleName("Result")
        self.when = QComboBox()
        self.when.addItems(RANGES)
        self.when.setAccessibleName("When")
        today = QDate.currentDate()
        self.first_day = QDateEdit(today.addDays(-7))
        self.last_day = QDateEdit(today)
        for edit, name in ((self.first_day, "From"), (self.last_day, "To")):
            edit.setCalendarPopup(True)
            edit.setDisplayFormat("yyyy-MM-dd")
            edit.setAccessibleName(name)
            edit.hide()
        self.and_label = QLabel("to")
        self.and_label.hide()

        filters = QHBoxLayout()
        filters.setSpacing(6)
        filters.addWidget(self.search, 2)
        for widget in (self.folder, self.direction, self.result, self.when):
            filters.addWidget(widget)
        filters.addWidget(self.first_day)
        filters.addWidget(self.and_label)
        filters.addWidget(self.last_day)

        self.table = QTableView()
        self.table.setModel(model)
        self.table.setSortingEnabled(True)
        self.table.sortByColumn(HistoryModel.TIME, Qt.SortOrder.DescendingOrder)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setAlternatingRowColors(True)
        self.table.setShowGrid(False)
        self.table.setWordWrap(False)
        self.table.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.table.verticalHeader().hide()
        self.table.verticalHeader().setDefaultSectionSize(26)
        header = self.table.horizontalHeader()
        header.setDefaultAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)
        header.setSectionResizeMode(HistoryModel.FILE, QHeaderView.ResizeMode.Stretch)
        for column, width in (
            (HistoryModel.TIME, 140),
            (HistoryModel.FOLDER, 110),
            (HistoryModel.DIRECTION, 85),
            (HistoryModel.SIZE, 80),
            (HistoryModel.DURATION, 80),
            (HistoryModel.SPEED, 90),
            (HistoryModel.RESULT, 80),
        ):
            header.resizeSection(column, width)
        self.table.activated.connect(self._open_file_at)  # Enter or double-click
        self.table.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.table.customContextMenuRequested.connect(self._popup_row_menu)

        self.empty = EmptyState("No transfers yet", "")
        self.stack = QStackedWidget()
        self.stack.addWidget(self.empty)
        self.stack.addWidget(self.table)

        self.count_label = muted()
        self.open_file = QPushButton("&Open file")
        self.open_folder = QPushButton("Show in &folder")
        self.versions = QPushButton("&Version history…")
        self.versions.setToolTip("Earlier versions of the selected file, to restore or open")
        self.trash = QPushButton("&Deleted files…")
        self.trash.setToolTip("Files deleted from your Dropline folders, to bring back")
        self.export = QPushButton("&Export CSV…")
        self.export.setToolTip("Save the rows that match the filters as a CSV file")
        buttons = QHBoxLayout()
        buttons.addWidget(self.count_label, 1)
        for button in (self.open_file, self.open_folder, self.versions, self.trash, self.export):
            buttons.addWidget(button)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(14, 12, 14, 14)
        layout.setSpacing(8)
        layout.addWidget(self.connection_banner)
        layout.addWidget(self.banner)
        layout.addLayout(filters)
        layout.addWidget(self.stack, 1)
        layout.addLayout(buttons)

        self._search_timer = QTimer(self)
        self._search_timer.setSingleShot(True)
        self._search_timer.setInterval(SEARCH_DELAY_MS)
        self._search_timer.timeout.connect(self.apply_filters)
        self.search.textChanged.connect(self._search_timer.start)
        self.search.returnPressed.connect(self.apply_filters)
        for combo in (self.folder, self.direction, self.result):
            combo.currentIndexChanged.connect(self.apply_filters)
        self.when.currentIndexChanged.connect(self._range_changed)
        self.first_day.dateChanged.connect(self.apply_filters)
        self.last_day.dateChanged.connect(self.apply_filters)
        self.open_file.clicked.connect(self.open_selected_file)
        self.open_folder.clicked.connect(self.open_selected_folder)
        self.versions.clicked.connect(self.show_selected_versions)
        self.trash.clicked.connect(self.show_deleted_files)
        self.export.clicked.connect(self.choose_export_file)
        self.table.selectionModel().selectionChanged.connect(self._update_buttons)
        for signal in (
            model.rowsInserted,
            model.rowsRemoved,
            model.modelReset,
            model.layoutChanged,
        ):
            signal.connect(self._update_counts)
        model.loadingChanged.connect(self._update_counts)
        model.loadFailed.connect(self._load_failed)
        model.modelReset.connect(self._load_restarted)
        QShortcut(QKeySequence(QKeySequence.StandardKey.Find), self, self.search.setFocus)
        QShortcut(QKeySequence("Ctrl+E"), self, self.choose_export_file)

        self.setTabOrder(self.search, self.folder)
        self.setTabOrder(self.folder, self.direction)
        self.setTabOrder(self.direction, self.result)
        self.setTabOrder(self.result, self.when)
        self.setTabOrder(self.when, self.table)
        self._update_buttons()
        self._update_counts()

    # -- filters

    def set_folders(self, folders: list[str]) -> None:
        """The sync folders offered in the folder filter (their local paths)."""
        current = self.folder.currentData()
        self.folder.blockSignals(True)
        self.folder.clear()
        self.folder.addItem("All folders", None)
        for local in folders:
            self.folder.addItem(folder_name(local), local)
            self.folder.setItemData(self.folder.count() - 1, local, Qt.ItemDataRole.ToolTipRole)
        index = self.folder.findData(current)
        self.folder.setCurrentIndex(max(0, index))
        self.folder.blockSignals(False)

    def current_filter(self) -> HistoryFilter:
        since, until = date_range(
            self.when.currentText(),
            self.first_day.date().toPython(),  # type: ignore[arg-type]
            self.last_day.date().toPython(),  # type: ignore[arg-type]
            date.today(),
        )
        return HistoryFilter(
            folder=self.folder.currentData(),
            direction=self.direction.currentData(),
            result=self.result.currentData(),
            search=self.search.text().strip() or None,
            since=since,
            until=until,
        )

    def apply_filters(self, *_args: Any) -> None:
        self._search_timer.stop()
        self.model.set_filter(self.current_filter())

    def _range_changed(self) -> None:
        custom = self.when.currentText() == "Between dates"
        for widget in (self.first_day, self.and_label, self.last_day):
            widget.setVisible(custom)
        self.apply_filters()

    # -- actions

    def selected_row(self) -> HistoryRowJSON | None:
        rows = self.table.selectionModel().selectedRows()
        return self.model.row_at(rows[0].row()) if rows else None

    def open_selected_file(self) -> None:
        row = self.selected_row()
        if row is not None:
            self._open(local_file(row["folder"], row["path"]))

    def open_selected_folder(self) -> None:
        row = self.selected_row()
        if row is not None:
            self._open(containing_folder(row["folder"], row["path"]))

    def show_selected_versions(self) -> None:
        row = self.selected_row()
        target = local_file(row["folder"], row["path"]) if row is not None else None
        if target is not None and target.is_file():
            self.versionsRequested.emit(str(target))
        elif row is not None:
            self._open(target)  # says why: gone from this computer, or outside its folder

    def show_deleted_files(self) -> None:
        """Deleted files, narrowed to the selected row's folder, and to its name when gone."""
        row = self.selected_row()
        if row is None:
            self.trashRequested.emit(self.folder.currentData(), "")
            return
        target = local_file(row["folder"], row["path"])
        gone = target is not None and not target.exists()
        self.trashRequested.emit(row["folder"], Path(row["path"]).name if gone else "")

    def row_menu(self, row: int) -> QMenu:
        """The context menu of a row: open it, its versions, deleted files near it."""
        self.table.selectRow(row)
        record = self.model.row_at(row)
        target = local_file(record["folder"], record["path"]) if record else None
        exists = target is not None and target.is_file()
        menu = QMenu(self)
        for name, text, handler, enabled in (
            ("open-file", "&Open file", self.open_selected_file, exists),
            ("open-folder", "Show in &folder", self.open_selected_folder, True),
            ("versions", "&Version history…", self.show_selected_versions, exists),
            ("trash", "Restore &deleted files…", self.show_deleted_files, True),
        ):
            action = menu.addAction(text)
            action.setObjectName(name)
            action.setEnabled(enabled)
            action.triggered.connect(handler)
            if name == "open-folder":
                menu.addSeparator()
        return menu

    def _popup_row_menu(self, point: QPoint) -> None:
        index = self.table.indexAt(point)
        if index.isValid():
            menu = self.row_menu(index.row())
            menu.aboutToHide.connect(menu.deleteLater)
            menu.popup(self.table.viewport().mapToGlobal(point))

    def _open_file_at(self, index: QModelIndex) -> None:
        row = self.model.row_at(index.row())
        if row is not None:
            self._open(local_file(row["folder"], row["path"]))

    def _open(self, path: Path | None) -> None:
        open_or_explain(path, self.opener, lambda m: self.banner.show_message(m, ERROR_ACCENT))

    def choose_export_file(self) -> None:
        default = str(Path.home() / f"dropline-history-{date.today().isoformat()}.csv")
        path, _ = QFileDialog.getSaveFileName(
            self, "Export history", default, "CSV files (*.csv);;All files (*)"
        )
        if path:
            self.export_to(Path(path))

    def export_to(self, path: Path) -> None:
        """Load every row the filters match (not just those scrolled to), then write them."""
        self.export.setEnabled(False)
        self.banner.show_message("Exporting…", closable=False)

        def write() -> None:
            self.export.setEnabled(True)
            if not self.model.is_complete():
                self.banner.show_message("The history could not be loaded in full.", ERROR_ACCENT)
                self.exportFailed.emit("incomplete")
                return
            try:
                count = write_history_csv(self.model.rows(), path)
            except OSError as exc:
                message = f"Could not write {path.name}: {exc.strerror or exc}"
                self.banner.show_message(message, ERROR_ACCENT)
                self.exportFailed.emit(message)
                return
            self.banner.show_message(f"Exported {fmt.plural(count, 'row')} to {path}.", OK_ACCENT)
            self.exported.emit(str(path), count)

        self.model.load_all(write)

    # -- state

    def _load_failed(self, text: str) -> None:
        # While the agent is out of reach the connection banner already says so.
        if self.connection_banner.isHidden():
            self._load_error = True
            self.banner.show_message(text, ERROR_ACCENT)

    def _load_restarted(self) -> None:
        if self._load_error:
            self._load_error = False
            self.banner.hide()

    def _update_buttons(self, *_args: Any) -> None:
        has = self.selected_row() is not None
        self.open_file.setEnabled(has)
        self.open_folder.setEnabled(has)
        self.versions.setEnabled(has)

    def _update_counts(self, *_args: Any) -> None:
        n = self.model.rowCount()
        filtered = self.model.filter() != HistoryFilter()
        if n:
            self.stack.setCurrentWidget(self.table)
        elif self.model.is_loading():
            self.empty.set_text("Loading…", "")
            self.stack.setCurrentWidget(self.empty)
        elif filtered:
            self.empty.set_text("No matching transfers", "Try a shorter search or fewer filters.")
            self.stack.setCurrentWidget(self.empty)
        else:
            self.empty.set_text(
                "No transfers yet",
                "Files you add to your Dropline folders, and files that arrive from the "
                "server, are listed here once they have been transferred.",
            )
            self.stack.setCurrentWidget(self.empty)
        more = "" if self.model.is_complete() else "; scroll for more"
        self.count_label.setText(f"{fmt.plural(n, 'transfer')} shown{more}" if n else "")
        self._update_buttons()
