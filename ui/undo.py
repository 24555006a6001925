"""The tray's ways back: version history, deleted files, and settling a conflict.

Opens the versions and deleted-files windows (through the tray's window registry,
so they follow the agent's connection like the others) and carries out the issues
window's "Keep both / mine / theirs" with the agent's ``conflicts.resolve``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

from PySide6.QtCore import QObject, QUrl
from PySide6.QtWidgets import QFileDialog

from dropline.agent.control import ControlError
from dropline.ui import format as fmt
from dropline.ui.desktop import Opener, open_path
from dropline.ui.issues import IssuesWindow
from dropline.ui.models import file_name
from dropline.ui.trash import TrashWindow
from dropline.ui.versions import VersionsWindow
from dropline.ui.widgets import ERROR_ACCENT, OK_ACCENT, ToolWindow
from dropline.ui.workers import AgentCall

log = logging.getLogger(__name__)

WindowMaker = Callable[[str, Callable[[], ToolWindow]], ToolWindow]

KEEP_DONE = {
    "both": "Kept both files: {name} and your conflicted copy beside it.",
    "mine": "Your version is now {name}; the other one stays in its version history.",
    "theirs": "Removed your conflicted copy of {name}; it is in Deleted files if you need it.",
}


class UndoActions(QObject):
    def __init__(
        self,
        call: AgentCall,
        window: WindowMaker,
        opener: Opener = open_path,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.call = call
        self._window = window
        self.opener = opener
        self.folders: list[str] = []
        self.picker: QFileDialog | None = None
        self._trash: TrashWindow | None = None

    def set_folders(self, folders: list[str]) -> None:
        """The sync folders' local paths, for the folder filter and the file picker."""
        self.folders = list(folders)
        if self._trash is not None:
            self._trash.set_folders(self.folders)

    # -- windows

    def versions_window(self) -> VersionsWindow:
        return cast(
            VersionsWindow,
            self._window("versions", lambda: VersionsWindow(self.call, self.opener)),
        )

    def trash_window(self) -> TrashWindow:
        def make() -> TrashWindow:
            window = TrashWindow(self.call)
            window.set_folders(self.folders)
            self._trash = window
            return window

        return cast(TrashWindow, self._window("trash", make))

    def open_versions(self, path: str) -> None:
        """The version history of the local file ``path``."""
        window = self.versions_window()
        window.show_file(path)
        window.bring_up()

    def choose_file_for_versions(self) -> None:
        """From the tray menu: a file picker in the sync folders, then that file's history.

        A picker rather than the history window: people ask for a file's earlier
        version by the file, and the one they mean may never have appeared in the
        recent transfers. The picker starts in the first sync folder and offers
        every sync folder in its sidebar.
        """
        if self.picker is not None:
            self.picker.raise_()
            self.picker.activateWindow()
            return
        start = self.folders[0] if self.folders else str(Path.home())
        picker = QFileDialog(None, "Choose a file to see its versions - Dropline", start)
        picker.setFileMode(QFileDialog.FileMode.ExistingFile)
        picker.setOption(QFileDialog.Option.DontUseNativeDialog, True)  # for the sidebar
        picker.setSidebarUrls([QUrl.fromLocalFile(f) for f in self.folders])
        picker.setLabelText(QFileDialog.DialogLabel.Accept, "Show versions")

        def chosen(path: str) -> None:
            self.open_versions(os.path.abspath(path))

        def closed(_result: int) -> None:
            self.picker = None
            picker.deleteLater()

        picker.fileSelected.connect(chosen)
        picker.finished.connect(closed)
        self.picker = picker
        picker.open()

    def close(self) -> None:
        """Close the file picker, if open (the windows close with the tray's others)."""
        if self.picker is not None:
            self.picker.reject()

    def open_trash(self, folder: str | None = None, search: str = "") -> None:
        """The deleted-files window, filtered to ``folder`` (a local root) and ``search``."""
        window = self.trash_window()
        window.show_for(folder, search)
        window.bring_up()

    # -- conflicts

    def resolve_conflict(self, issue_id: int, keep: str, window: IssuesWindow) -> None:
        issue = next((i for i in window.model.issues() if i["id"] == issue_id), None)
        name = file_name(issue["path"]) if issue else "the file"

        def done(_result: dict[str, Any]) -> None:
            window.model.remove(issue_id)
            window.banner.show_message(KEEP_DONE[keep].format(name=name), OK_ACCENT)

        def failed(error: ControlError) -> None:
            window.banner.show_message(
                f"Could not settle the conflict on {name}: {fmt.sentence(error.message)}",
                ERROR_ACCENT,
            )

        self.call(
            "conflicts.resolve", {"id": issue_id, "keep": keep}, on_done=done, on_error=failed
        )
