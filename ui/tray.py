"""The tray icon and its menu: status line, folders, pause/resume, windows, account, quit.

It only shows state and emits what the user asked for; the controller does the rest.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QMenu, QSystemTrayIcon

from dropline.ui.icons import tray_icon
from dropline.ui.models import folder_name
from dropline.ui.status import Summary

FOLDERS_INLINE = 4  # more sync folders than this go into an "Open folder" submenu


def _items(state: MenuState) -> tuple[object, ...]:
    """Everything that decides which items the menu has (not the status wording)."""
    return (
        state.folders,
        state.issues,
        state.connected,
        state.signed_in,
        state.account,
        state.can_sign_out,
    )


@dataclass(frozen=True, slots=True)
class MenuState:
    summary: Summary
    folders: tuple[tuple[str, str], ...] = ()  # (local path, state)
    issues: int = 0
    connected: bool = False
    signed_in: bool = False
    account: str = ""
    can_sign_out: bool = True


class Tray(QObject):
    openFolder = Signal(str)
    pauseAll = Signal()
    resumeAll = Signal()
    pauseFolder = Signal(str)
    resumeFolder = Signal(str)
    syncNow = Signal()
    showTransfers = Signal()
    showHistory = Signal()
    showIssues = Signal()
    showVersions = Signal()
    showTrash = Signal()
    showSettings = Signal()
    signIn = Signal()
    signOut = Signal()
    quitRequested = Signal()

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.menu = QMenu()
        self.menu.setObjectName("tray-menu")
        self.icon = QSystemTrayIcon(self)
        self.icon.setContextMenu(self.menu)
        self.icon.activated.connect(self._activated)
        self.state = MenuState(Summary("offline", "Connecting to the Dropline service…"))
        self.icon_name = ""
        self._built: MenuState | None = None
        self.apply(self.state)

    def show(self) -> None:
        self.icon.show()

    def hide(self) -> None:
        self.icon.hide()

    def apply(self, state: MenuState) -> None:
        """Show ``state``: the icon and tooltip always, the menu when something in it changed."""
        self.state = state
        if state.summary.icon != self.icon_name:
            self.icon_name = state.summary.icon
            self.icon.setIcon(tray_icon(state.summary.icon))
        self.icon.setToolTip(state.summary.tooltip)
        # Progress changes the status line many times a second: update its text in place
        # and rebuild the menu only when its items change, so an open menu stays put.
        if self._built is not None and _items(state) == _items(self._built):
            self._built = state
            self._status.setText(state.summary.headline)
            self._status.setIcon(tray_icon(state.summary.icon))
            self._detail.setText(state.summary.detail)
            self._detail.setVisible(bool(state.summary.detail))
        else:
            self._build()

    def action(self, name: str) -> QAction | None:
        """The menu action with this object name (``"pause-all"``, ``"issues"``, ...)."""
        for action in self._all_actions(self.menu):
            if action.objectName() == name:
                return action
        return None

    def _all_actions(self, menu: QMenu) -> list[QAction]:
        found = []
        for action in menu.actions():
            found.append(action)
            if action.menu() is not None:
                found.extend(self._all_actions(action.menu()))  # type: ignore[arg-type]
        return found

    def _add(self, menu: QMenu, name: str, text: str, handler: Any = None) -> QAction:
        action = menu.addAction(text)
        action.setObjectName(name)
        if handler is not None:
            action.triggered.connect(handler)
        return action

    def _build(self) -> None:
        s = self.state
        self._built = s
        menu = self.menu
        menu.clear()
        self._status = self._add(menu, "status", s.summary.headline)
        self._status.setEnabled(False)
        self._status.setIcon(tray_icon(s.summary.icon))
        font = self._status.font()
        font.setBold(True)
        self._status.setFont(font)
        self._detail = self._add(menu, "status-detail", s.summary.detail)
        self._detail.setEnabled(False)
        self._detail.setVisible(bool(s.summary.detail))
        menu.addSeparator()

        if s.folders:
            target = menu
            if len(s.folders) > FOLDERS_INLINE:
                target = menu.addMenu("&Open folder")
            for local, _state in s.folders:
                text = f"Open {folder_name(local)}" if target is menu else folder_name(local)
                self._add(
                    target,
                    f"open-folder:{local}",
                    text,
                    lambda _=False, f=local: self.openFolder.emit(f),
                )
            menu.addSeparator()

        paused = [local for local, state in s.folders if state == "paused"]
        all_paused = bool(s.folders) and len(paused) == len(s.folders)
        if all_paused:
            self._add(menu, "resume-all", "&Resume syncing", self.resumeAll.emit)
        else:
            self._add(menu, "pause-all", "&Pause syncing", self.pauseAll.emit)
        if len(s.folders) > 1:
            per_folder = menu.addMenu("Pause or resume a &folder")
            for local, state in s.folders:
                is_paused = state == "paused"
                verb = "Resume" if is_paused else "Pause"
                signal = self.resumeFolder if is_paused else self.pauseFolder
                self._add(
                    per_folder,
                    f"{verb.lower()}-folder:{local}",
                    f"{verb} {folder_name(local)}",
                    lambda _=False, f=local, sig=signal: sig.emit(f),
                )
        self._add(menu, "sync-now", "&Sync now", self.syncNow.emit)
        menu.addSeparator()
        self._add(menu, "transfers", "&Transfers…", self.showTransfers.emit)
        self._add(menu, "history", "&History…", self.showHistory.emit)
        self._add(menu, "versions", "&Version history…", self.showVersions.emit)
        self._add(menu, "trash", "Restore &deleted files…", self.showTrash.emit)
        issues_text = f"&Issues ({s.issues})…" if s.issues else "&Issues…"
        self._add(menu, "issues", issues_text, self.showIssues.emit)
        menu.addSeparator()
        if s.signed_in:
            who = f" ({s.account})" if s.account else ""
            sign_out = self._add(menu, "sign-out", f"Sign &out{who}", self.signOut.emit)
            sign_out.setEnabled(s.can_sign_out)
            if not s.can_sign_out:
                sign_out.setToolTip("Set by your administrator")
        else:
            self._add(menu, "sign-in", "Sign &in…", self.signIn.emit)
        self._add(menu, "settings", "S&ettings…", self.showSettings.emit)
        menu.addSeparator()
        self._add(menu, "quit", "&Quit Dropline", self.quitRequested.emit)

        for name in ("pause-all", "resume-all", "sync-now", "sign-in", "sign-out"):
            action = self.action(name)
            if action is not None and not s.connected:
                action.setEnabled(False)
        for local, _ in s.folders:
            for prefix in ("pause-folder:", "resume-folder:"):
                action = self.action(prefix + local)
                if action is not None and not s.connected:
                    action.setEnabled(False)

    def _activated(self, reason: QSystemTrayIcon.ActivationReason) -> None:
        if reason in (
            QSystemTrayIcon.ActivationReason.Trigger,
            QSystemTrayIcon.ActivationReason.DoubleClick,
        ):
            self.showTransfers.emit()
