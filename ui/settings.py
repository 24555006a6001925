"""The settings window: sync folders, bandwidth, start at login, notifications.

Every change goes to the agent at once (it writes the config file); keys the
administrator's policy locks are shown disabled with "Set by your administrator".
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from dropline.ui import format as fmt
from dropline.ui.models import folder_name
from dropline.ui.widgets import ERROR_ACCENT, ToolWindow, muted

LOCKED_TEXT = "Set by your administrator"

MODES = (
    ("two-way", "Two-way sync", "Changes on either side reach the other."),
    ("upload-only", "Upload only (drop folder)", "Files you add go to the server."),
    ("download-only", "Download only (inbox)", "Files on the server come to this folder."),
)
MODE_WORDS = {value: text for value, text, _ in MODES}


class AddFolderDialog(QDialog):
    """Local folder (with a picker), the server folder it maps to, and the mode."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Add a folder - Dropline")
        self.setMinimumWidth(520)
        self.local = QLineEdit()
        self.local.setPlaceholderText("The folder on this computer")
        self.browse = QPushButton("&Choose…")
        self.browse.clicked.connect(self._choose)
        local_row = QHBoxLayout()
        local_row.addWidget(self.local, 1)
        local_row.addWidget(self.browse)
        self.remote = QLineEdit("/")
        self.remote.setToolTip("Where the files go on the server, for example /Reports")
        self.mode = QComboBox()
        for value, text, _ in MODES:
            self.mode.addItem(text, value)
        self.mode_help = muted(MODES[0][2])
        self.mode.currentIndexChanged.connect(lambda i: self.mode_help.setText(MODES[i][2]))
        self.local.textChanged.connect(self._suggest_remote)

        form = QFormLayout()
        form.addRow("&Folder on this computer:", local_row)
        form.addRow("Folder on the &server:", self.remote)
        form.addRow("&Mode:", self.mode)
        form.addRow("", self.mode_help)
        self.buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Add folder")
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.buttons)
        self._update_ok()
        self.local.textChanged.connect(self._update_ok)
        self.remote.textChanged.connect(self._update_ok)

    def _choose(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Choose a folder to sync", str(Path.home()))
        if path:
            self.local.setText(path)

    def _suggest_remote(self, text: str) -> None:
        # Follows the local folder's name until the user types their own server path.
        if self.remote.isModified():
            return
        name = Path(text).name if text else ""
        self.remote.setText(f"/{name}" if name else "/")

    def _update_ok(self) -> None:
        ok = bool(self.local.text().strip()) and self.remote.text().startswith("/")
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setEnabled(ok)

    def values(self) -> dict[str, Any]:
        return {
            "local": self.local.text().strip(),
            "remote": self.remote.text().strip() or "/",
            "mode": self.mode.currentData(),
        }


def _locked_note() -> QLabel:
    label = muted(LOCKED_TEXT)
    label.setWordWrap(False)
    label.setObjectName("locked-note")
    label.hide()
    return label


class SettingsWindow(ToolWindow):
    settingChanged = Signal(str, object)  # key, value
    addFolderRequested = Signal(dict)
    removeFolderRequested = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Settings", parent)
        self.resize(720, 460)
        self.settings: dict[str, dict[str, Any]] = {}
        self.folders: list[dict[str, Any]] = []
        self.can_add = True
        self._loading = False

        # -- folders
        self.folder_table = QTableWidget(0, 3)
        self.folder_table.setHorizontalHeaderLabels(
            ["Folder on this computer", "On the server", "Mode"]
        )
        self.folder_table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.folder_table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.folder_table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.folder_table.verticalHeader().hide()
        self.folder_table.setShowGrid(False)
        self.folder_table.setAlternatingRowColors(True)
        header = self.folder_table.horizontalHeader()
        header.setDefaultAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        header.resizeSection(1, 170)
        header.resizeSection(2, 190)
        self.add_folder = QPushButton("&Add folder…")
        self.remove_folder = QPushButton("&Remove")
        self.remove_folder.setToolTip("Stop syncing this folder; its files stay on this computer")
        self.folders_note = _locked_note()
        folder_buttons = QHBoxLayout()
        folder_buttons.addWidget(self.folders_note)
        folder_buttons.addStretch(1)
        folder_buttons.addWidget(self.add_folder)
        folder_buttons.addWidget(self.remove_folder)
        folders_tab = QWidget()
        folders_layout = QVBoxLayout(folders_tab)
        folders_layout.addWidget(self.folder_table, 1)
        folders_layout.addLayout(folder_buttons)

        # -- network
        self.server_url = QLineEdit()
        self.server_url.setPlaceholderText("https://mft.example.com")
        self.upload_limit = self._rate_box()
        self.download_limit = self._rate_box()
        self.concurrency = QSpinBox()
        self.concurrency.setRange(1, 32)
        self.concurrency.setSuffix(" at once")
        self.concurrency.setMinimumWidth(160)
        network_tab = QWidget()
        network = QFormLayout(network_tab)
        network.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.ExpandingFieldsGrow)
        self.notes: dict[str, QLabel] = {}
        self.fields: dict[str, QWidget] = {
            "server_url": self.server_url,
            "bandwidth.upload_kbps": self.upload_limit,
            "bandwidth.download_kbps": self.download_limit,
            "concurrency": self.concurrency,
        }
        for key, label in (
            ("server_url", "&Server:"),
            ("bandwidth.upload_kbps", "&Upload limit:"),
            ("bandwidth.download_kbps", "&Download limit:"),
            ("concurrency", "&Transfers:"),
        ):
            network.addRow(label, self._with_note(key, self.fields[key]))
        network.addRow(
            "", muted("Limits apply to this computer; Unlimited uses the whole connection.")
        )

        # -- general
        self.start_at_login = QCheckBox("Start Dropline when I sign in to this computer")
        self.notifications = QCheckBox("Show notifications when files arrive or need attention")
        general_tab = QWidget()
        general = QVBoxLayout(general_tab)
        for key, check in (
            ("start_at_login", self.start_at_login),
            ("notifications", self.notifications),
        ):
            self.fields[key] = check
            general.addWidget(self._with_note(key, check))
        general.addStretch(1)

        self.tabs = QTabWidget()
        self.tabs.addTab(folders_tab, "&Folders")
        self.tabs.addTab(network_tab, "&Network")
        self.tabs.addTab(general_tab, "&General")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(14, 12, 14, 14)
        layout.addWidget(self.connection_banner)
        layout.addWidget(self.banner)
        layout.addWidget(self.tabs, 1)

        self.server_url.editingFinished.connect(
            lambda: self._changed("server_url", self.server_url.text().strip())
        )
        for key, box in (
            ("bandwidth.upload_kbps", self.upload_limit),
            ("bandwidth.download_kbps", self.download_limit),
        ):
            box.editingFinished.connect(lambda k=key, b=box: self._changed(k, b.value() or None))
        self.concurrency.editingFinished.connect(
            lambda: self._changed("concurrency", self.concurrency.value())
        )
        self.start_at_login.toggled.connect(lambda on: self._changed("start_at_login", on))
        self.notifications.toggled.connect(lambda on: self._changed("notifications", on))
        self.add_folder.clicked.connect(self._add_folder)
        self.remove_folder.clicked.connect(self._remove_folder)
        self.folder_table.itemSelectionChanged.connect(self._update_folder_buttons)
        self._update_folder_buttons()

    @staticmethod
    def _rate_box() -> QSpinBox:
        box = QSpinBox()
        box.setRange(0, 10_000_000)
        box.setSingleStep(256)
        box.setSuffix(" KB/s")
        box.setSpecialValueText("Unlimited")
        box.setAccelerated(True)
        box.setMinimumWidth(160)
        return box

    def _with_note(self, key: str, field: QWidget) -> QWidget:
        holder = QWidget()
        row = QHBoxLayout(holder)
        row.setContentsMargins(0, 0, 0, 0)
        # Number fields keep their natural width; text fields take the row.
        row.addWidget(field, 0 if isinstance(field, QSpinBox) else 1)
        note = _locked_note()
        row.addWidget(note)
        if isinstance(field, QSpinBox | QCheckBox):
            row.addStretch(1)
        self.notes[key] = note
        return holder

    # -- feeding from the agent

    def set_settings(self, settings: dict[str, dict[str, Any]]) -> None:
        """``settings.get`` result: fill every field and lock what the policy locks."""
        self._loading = True
        self.settings = settings
        for key, field in self.fields.items():
            entry = settings.get(key, {"value": None, "locked": False})
            value = entry.get("value")
            if isinstance(field, QLineEdit):
                field.setText(str(value or ""))
            elif isinstance(field, QSpinBox):
                field.setValue(int(value or 0))
            elif isinstance(field, QCheckBox):
                field.setChecked(bool(value))
            locked = bool(entry.get("locked"))
            field.setEnabled(not locked)
            field.setToolTip(LOCKED_TEXT if locked else "")
            self.notes[key].setVisible(locked)
        self._loading = False

    def set_folders(self, folders: list[dict[str, Any]], can_add: bool) -> None:
        self.folders = list(folders)
        self.can_add = can_add
        self.folder_table.setRowCount(len(folders))
        for row, folder in enumerate(folders):
            cells = (
                fmt.home_path(folder["local"]),
                folder["remote"],
                MODE_WORDS.get(folder["mode"], folder["mode"]),
            )
            for column, text in enumerate(cells):
                item = QTableWidgetItem(text)
                tip = (
                    f"{folder['local']}\n{LOCKED_TEXT}" if folder.get("locked") else folder["local"]
                )
                item.setToolTip(tip)
                self.folder_table.setItem(row, column, item)
        self.add_folder.setEnabled(can_add)
        self.add_folder.setToolTip("" if can_add else LOCKED_TEXT)
        self._update_folder_buttons()

    def show_error(self, message: str) -> None:
        self.banner.show_message(message, ERROR_ACCENT)

    # -- user actions

    def _changed(self, key: str, value: Any) -> None:
        if self._loading:
            return
        current = self.settings.get(key, {}).get("value")
        if key.startswith("bandwidth.") and not current:
            current = None
        if value == current:
            return
        self.settings.setdefault(key, {"locked": False})["value"] = value
        self.settingChanged.emit(key, value)

    def _add_folder(self) -> None:
        dialog = AddFolderDialog(self)
        if dialog.exec() == QDialog.DialogCode.Accepted:
            self.addFolderRequested.emit(dialog.values())

    def selected_folder(self) -> dict[str, Any] | None:
        rows = self.folder_table.selectionModel().selectedRows()
        return self.folders[rows[0].row()] if rows else None

    def _remove_folder(self) -> None:
        folder = self.selected_folder()
        if folder is not None and not folder.get("locked"):
            self.removeFolderRequested.emit(folder["local"])

    def _update_folder_buttons(self) -> None:
        folder = self.selected_folder()
        locked = bool(folder and folder.get("locked"))
        self.remove_folder.setEnabled(folder is not None and not locked)
        self.remove_folder.setToolTip(
            LOCKED_TEXT if locked else "Stop syncing this folder; its files stay on this computer"
        )
        managed = [f for f in self.folders if f.get("locked")]
        if not self.can_add:
            self.folders_note.setText(f"Adding folders: {LOCKED_TEXT.lower()}")
            self.folders_note.show()
        elif managed:
            names = ", ".join(folder_name(f["local"]) for f in managed)
            self.folders_note.setText(f"{names}: {LOCKED_TEXT.lower()}")
            self.folders_note.show()
        else:
            self.folders_note.hide()
