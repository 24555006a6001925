"""Wires the tray together: agent events into models and windows, user actions into requests.

``TrayApp`` owns the agent link, the three table models, the notifier, the tray
icon and the windows (created when first opened). It holds no agent logic of its
own: every decision is the agent's, every answer arrives as an event or a reply.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QApplication, QSystemTrayIcon

from dropline.agent.control import ControlError
from dropline.agent.control.protocol import HistoryRowJSON, IssueJSON, ProgressJSON
from dropline.ui import enrollment
from dropline.ui.desktop import Opener, open_path
from dropline.ui.format import sentence
from dropline.ui.history import HistoryWindow
from dropline.ui.issues import IssuesWindow
from dropline.ui.models import HistoryModel, IssuesModel, TransfersModel
from dropline.ui.notifications import Level, Notice, Notifier
from dropline.ui.settings import SettingsWindow
from dropline.ui.signin import SignInWindow
from dropline.ui.status import Moving, summarize
from dropline.ui.transfers import TransfersWindow
from dropline.ui.tray import MenuState, Tray
from dropline.ui.undo import UndoActions
from dropline.ui.widgets import ERROR_ACCENT, ToolWindow
from dropline.ui.workers import AgentLink

log = logging.getLogger(__name__)


class TrayApp(QObject):
    summaryChanged = Signal(object)  # Summary

    def __init__(
        self,
        link: AgentLink,
        opener: Opener = open_path,
        notifier: Notifier | None = None,
        show_tray: bool = True,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.link = link
        self.opener = opener
        self.show_tray = show_tray
        self.status: dict[str, Any] | None = None
        self.reason = ""
        self.folders: list[dict[str, Any]] = []
        self.can_add_folders = True
        self.settings: dict[str, dict[str, Any]] = {}
        self.signin: dict[str, Any] = {"state": "signed_out", "method": None}
        self.was_signed_in = False
        self._signin_known = False  # the agent's sign-in state has arrived since connecting
        self._enrollment_offered = False  # the first sign-in prompt shows once per run
        self.summary = summarize(None, 0, Moving())
        self._status_inflight = False
        self._status_again = False
        self._last_notice: Notice | None = None

        self.history_model = HistoryModel(self._fetch_history, parent=self)
        self.transfers_model = TransfersModel(parent=self)
        self.issues_model = IssuesModel(self)
        self.notifier = notifier or Notifier(parent=self)
        self.notifier.notice.connect(self._show_notice)

        self._windows: dict[str, ToolWindow] = {}
        self.undo = UndoActions(link.call, self._window, opener, parent=self)
        self.tray = Tray(self)
        self.tray.openFolder.connect(lambda local: self.opener(Path(local)))
        self.tray.pauseAll.connect(lambda: self._act("pause"))
        self.tray.resumeAll.connect(lambda: self._act("resume"))
        self.tray.pauseFolder.connect(lambda local: self._act("pause", {"folder": local}))
        self.tray.resumeFolder.connect(lambda local: self._act("resume", {"folder": local}))
        self.tray.syncNow.connect(lambda: self._act("sync_now"))
        self.tray.showTransfers.connect(self.open_transfers)
        self.tray.showHistory.connect(self.open_history)
        self.tray.showIssues.connect(self.open_issues)
        self.tray.showVersions.connect(self.undo.choose_file_for_versions)
        self.tray.showTrash.connect(lambda: self.undo.open_trash())
        self.tray.showSettings.connect(self.open_settings)
        self.tray.signIn.connect(self.open_signin)
        self.tray.signOut.connect(self.sign_out)
        self.tray.quitRequested.connect(self.quit)
        self.tray.icon.messageClicked.connect(self._notice_clicked)

        self.transfers_model.totalsChanged.connect(self._refresh)
        self.issues_model.rowsInserted.connect(self._refresh)
        self.issues_model.rowsRemoved.connect(self._refresh)
        self.issues_model.modelReset.connect(self._refresh)

        link.connected.connect(self._on_connected)
        link.disconnected.connect(self._on_disconnected)
        link.agentEvent.connect(self._on_event)

    # -- lifecycle

    def start(self) -> None:
        self._refresh()
        if self.show_tray:
            self.tray.show()
        self.link.start()

    def quit(self) -> None:
        """Quit the tray. A service agent keeps running; an agent this tray started stops."""
        self.close_windows()
        self.tray.hide()
        self.link.stop(stop_started_agent=True)
        app = QApplication.instance()
        if app is not None:
            app.quit()

    # -- windows

    def close_windows(self) -> None:
        self.undo.close()
        for window in self._windows.values():
            window.close()

    def _window(self, name: str, make: Callable[[], ToolWindow]) -> ToolWindow:
        window = self._windows.get(name)
        if window is None:
            window = make()
            window.set_connected(self.link.is_connected, self.reason)
            self._windows[name] = window
        return window

    def transfers_window(self) -> TransfersWindow:
        return cast(
            TransfersWindow,
            self._window("transfers", lambda: TransfersWindow(self.transfers_model)),
        )

    def history_window(self) -> HistoryWindow:
        def make() -> HistoryWindow:
            window = HistoryWindow(self.history_model, self.opener)
            window.set_folders([f["local"] for f in self._folder_statuses()])
            window.versionsRequested.connect(self.undo.open_versions)
            window.trashRequested.connect(self.undo.open_trash)
            return window

        return cast(HistoryWindow, self._window("history", make))

    def issues_window(self) -> IssuesWindow:
        def make() -> IssuesWindow:
            window = IssuesWindow(self.issues_model, self.opener)
            window.retryRequested.connect(self.retry_issue)
            window.dismissRequested.connect(self.dismiss_issue)
            window.resolveRequested.connect(
                lambda issue_id, keep: self.undo.resolve_conflict(issue_id, keep, window)
            )
            return window

        return cast(IssuesWindow, self._window("issues", make))

    def settings_window(self) -> SettingsWindow:
        def make() -> SettingsWindow:
            window = SettingsWindow()
            window.settingChanged.connect(self.set_setting)
            window.addFolderRequested.connect(self.add_folder)
            window.removeFolderRequested.connect(self.remove_folder)
            window.set_settings(self.settings)
            window.set_folders(self.folders, self.can_add_folders)
            return window

        return cast(SettingsWindow, self._window("settings", make))

    def signin_window(self) -> SignInWindow:
        def make() -> SignInWindow:
            window = SignInWindow()
            window.startRequested.connect(self.start_signin)
            window.set_server(self._server_url())
            window.show_state(self.signin, signed_out_before=self._signed_out_before())
            return window

        return cast(SignInWindow, self._window("signin", make))

    def open_transfers(self) -> None:
        self.transfers_window().bring_up()

    def open_history(self) -> None:
        window = self.history_window()
        if not window.isVisible():
            self.history_model.refresh()
        window.bring_up()

    def open_issues(self) -> None:
        window = self.issues_window()
        window.bring_up()
        window.select_first()

    def open_settings(self) -> None:
        window = self.settings_window()
        self._load_settings()
        self._load_folders()
        window.bring_up()

    def open_signin(self) -> None:
        window = self.signin_window()
        window.set_server(self._server_url())
        if self.signin.get("state") != "pending":
            window.show_state(self.signin, signed_out_before=self._signed_out_before())
        window.bring_up()

    # -- user actions

    def _act(self, op: str, args: dict[str, Any] | None = None) -> None:
        self.link.call(op, args, on_done=lambda _r: self._request_status(), on_error=self._failed)

    def _failed(self, error: ControlError) -> None:
        log.info("agent refused: %s (%s)", error.message, error.code)
        self.notifier.error(sentence(error.message))

    def start_signin(
        self, device: bool, then: Callable[[dict[str, Any]], None] | None = None
    ) -> None:
        """Ask the agent to start a sign-in; ``then`` gets the state it started in (or the
        state as it was, when the agent refused)."""
        window = self.signin_window()

        def started(result: dict[str, Any]) -> None:
            self.signin = result
            window.show_state(result)
            if then is not None:
                then(result)

        def refused(error: ControlError) -> None:
            window.show_error(sentence(error.message))
            if then is not None:
                then(self.signin)

        self.link.call(
            "signin.start", {"device": True} if device else None, on_done=started, on_error=refused
        )

    def _offer_enrollment(self) -> None:
        """Once per run, when the agent waits for its first credential: a notice to sign in,
        with a device code already when the policy says ``enrollment = "device"``."""
        if self._enrollment_offered or not self._signin_known or not self.settings:
            return
        if self.was_signed_in or not enrollment.waiting_for_credential(self.status, self.signin):
            return
        self._enrollment_offered = True
        if self.settings.get("enrollment", {}).get("value") == enrollment.DEVICE:
            self.start_signin(True, then=lambda state: self._announce(enrollment.prompt(state)))
        else:
            self._announce(enrollment.prompt(self.signin))

    def _announce(self, notice: Notice) -> None:
        self.notifier.now(notice)
        if self.show_tray and not QSystemTrayIcon.isSystemTrayAvailable():
            self.open_signin()  # no tray to show the notice in: the window says it instead

    def sign_out(self) -> None:
        def done(_result: dict[str, Any]) -> None:
            self.signin = {"state": "signed_out", "method": None}
            self._request_status()

        self.link.call("signout", on_done=done, on_error=self._failed)

    def retry_issue(self, issue_id: int) -> None:
        window = self.issues_window()
        self.link.call(
            "issues.retry",
            {"id": issue_id},
            on_error=lambda e: window.banner.show_message(sentence(e.message), ERROR_ACCENT),
        )

    def dismiss_issue(self, issue_id: int) -> None:
        self.link.call(
            "issues.dismiss",
            {"id": issue_id},
            on_done=lambda _r: self._forget_issue(issue_id),
            on_error=self._failed,
        )

    def _forget_issue(self, issue_id: int) -> None:
        self.issues_model.remove(issue_id)

    def set_setting(self, key: str, value: Any) -> None:
        window = self.settings_window()

        def refused(error: ControlError) -> None:
            window.show_error(sentence(error.message))
            self._load_settings()  # show the value that is really in force

        def done(_result: dict[str, Any]) -> None:
            window.banner.hide()
            if key == "notifications":
                self.notifier.enabled = bool(value)
            self._load_settings()

        self.link.call("settings.set", {"key": key, "value": value}, on_done=done, on_error=refused)

    def add_folder(self, values: dict[str, Any]) -> None:
        window = self.settings_window()

        def done(_result: dict[str, Any]) -> None:
            window.banner.hide()
            self._load_folders()
            self._request_status()

        self.link.call(
            "folders.add",
            values,
            on_done=done,
            on_error=lambda e: window.show_error(sentence(e.message)),
        )

    def remove_folder(self, local: str) -> None:
        window = self.settings_window()

        def done(_result: dict[str, Any]) -> None:
            self._load_folders()
            self._request_status()

        self.link.call(
            "folders.remove",
            {"local": local},
            on_done=done,
            on_error=lambda e: window.show_error(sentence(e.message)),
        )

    # -- the agent's side

    def _on_connected(self, snapshot: object) -> None:
        self.status = dict(cast(dict[str, Any], snapshot))
        self.reason = ""
        if self.status.get("signed_in"):
            self.was_signed_in = True
        self.transfers_model.clear()
        for window in self._windows.values():
            window.set_connected(True)
        self.link.call("issues.list", on_done=lambda r: self.issues_model.set_issues(r["issues"]))
        self.link.call("signin.state", on_done=self._got_signin)
        self._load_settings()
        self._load_folders()
        if "history" in self._windows:
            self.history_model.refresh()
        self._refresh()

    def _on_disconnected(self, reason: str) -> None:
        self.status = None
        self._signin_known = False
        self.reason = reason
        self.transfers_model.clear()
        for window in self._windows.values():
            window.set_connected(False, reason)
        self._refresh()

    def _on_event(self, name: str, data: object) -> None:
        payload = cast(dict[str, Any], data)
        if name == "progress":
            self.transfers_model.update(cast(ProgressJSON, payload))
        elif name == "history":
            row = cast(HistoryRowJSON, payload["row"])
            self.history_model.add_live(row)
            self.transfers_model.finish(row["folder"], row["path"], row["result"])
            if row["result"] == "ok":
                self.notifier.transfer(row["folder"], row["path"], row["direction"], "ok")
        elif name == "issue_raised":
            issue = cast(IssueJSON, payload["issue"])
            self.issues_model.add(issue)
            if issue["kind"] == "conflict":
                self.notifier.conflict(issue["folder"], issue["path"])
            else:
                self.notifier.transfer(
                    issue["folder"], issue["path"], "", "failed", issue["message"]
                )
        elif name == "issue_cleared":
            self.issues_model.remove(int(payload["id"]))
        elif name == "state":
            self._apply_state(payload.get("folder"), str(payload.get("state")))
            self._request_status()
        elif name == "signin":
            self._got_signin(payload)
            self._request_status()
            self._refresh()
        elif name == "config":
            if not payload.get("ok"):
                self.notifier.error(
                    "Your settings file has a problem; the last good settings stay in use: "
                    f"{payload.get('error')}"
                )
            self._load_settings()
            self._load_folders()

    def _apply_state(self, folder: str | None, state: str) -> None:
        if self.status is None:
            return
        if folder is None:
            self.status["state"] = state
        else:
            for entry in self.status.get("folders", []):
                if entry.get("local") == folder:
                    entry["state"] = state
        self._refresh()

    def _got_signin(self, state: dict[str, Any]) -> None:
        self.signin = dict(state)
        self._signin_known = True
        if state.get("state") == "signed_in":
            self.was_signed_in = True
        window = self._windows.get("signin")
        if isinstance(window, SignInWindow):
            window.show_state(self.signin, signed_out_before=self._signed_out_before())
        self._offer_enrollment()

    def _request_status(self) -> None:
        # One status request at a time; a burst of state events makes at most one more.
        if self._status_inflight:
            self._status_again = True
            return
        self._status_inflight = True

        def done(result: dict[str, Any]) -> None:
            self._status_inflight = False
            self.status = result
            if result.get("signed_in"):
                self.was_signed_in = True
            moving = result.get("uploading", 0) or result.get("downloading", 0)
            if not moving and result.get("state") not in ("syncing", "scanning"):
                self.transfers_model.settle()
            self._refresh()
            self._offer_enrollment()
            if self._status_again:
                self._status_again = False
                self._request_status()

        def failed(_error: ControlError) -> None:
            self._status_inflight = False
            self._status_again = False

        self.link.call("status", on_done=done, on_error=failed)

    def _load_settings(self) -> None:
        def done(result: dict[str, Any]) -> None:
            self.settings = result["settings"]
            self.notifier.enabled = bool(self.settings.get("notifications", {}).get("value", True))
            window = self._windows.get("settings")
            if isinstance(window, SettingsWindow):
                window.set_settings(self.settings)
            self._refresh()
            self._offer_enrollment()

        self.link.call("settings.get", on_done=done)

    def _load_folders(self) -> None:
        def done(result: dict[str, Any]) -> None:
            self.folders = list(result["folders"])
            self.can_add_folders = bool(result.get("can_add", True))
            window = self._windows.get("settings")
            if isinstance(window, SettingsWindow):
                window.set_folders(self.folders, self.can_add_folders)
            history = self._windows.get("history")
            if isinstance(history, HistoryWindow):
                history.set_folders([f["local"] for f in self.folders])
            self.undo.set_folders([f["local"] for f in self.folders])

        self.link.call("folders.list", on_done=done)

    def _fetch_history(
        self, args: dict[str, Any], deliver: Callable[[Sequence[HistoryRowJSON] | None], None]
    ) -> None:
        self.link.call(
            "history.query",
            args,
            on_done=lambda r: deliver(r.get("rows", [])),
            on_error=lambda _e: deliver(None),
        )

    # -- what the tray shows

    def _folder_statuses(self) -> list[dict[str, Any]]:
        return list(self.status.get("folders", [])) if self.status else []

    def _server_url(self) -> str | None:
        url = self.status.get("server_url") if self.status else None
        if url is None:
            url = self.settings.get("server_url", {}).get("value")
        return str(url) if url else None

    def _signed_out_before(self) -> bool:
        return self.was_signed_in or bool(self._folder_statuses())

    def _account(self) -> str:
        for source in (self.status or {}, self.signin):
            name = source.get("account")
            if name:
                return str(name)
        url = self._server_url()
        return urlsplit(url).hostname or "" if url else ""

    def moving(self) -> Moving:
        active = self.transfers_model.active()
        done, total, bps = self.transfers_model.totals()
        return Moving(
            uploading=sum(1 for t in active if t.direction == "up"),
            downloading=sum(1 for t in active if t.direction == "down"),
            bytes_left=max(0, total - done),
            bytes_per_second=bps,
        )

    def _refresh(self, *_args: Any) -> None:
        issues = self.issues_model.rowCount()
        summary = summarize(self.status, issues, self.moving(), self.reason)
        status = self.status or {}
        can_sign_out = self.settings.get("allow_sign_out", {}).get("value", True)
        self.tray.apply(
            MenuState(
                summary=summary,
                folders=tuple((f["local"], f["state"]) for f in self._folder_statuses()),
                issues=issues,
                connected=self.status is not None,
                signed_in=bool(status.get("signed_in")) or self.signin.get("state") == "signed_in",
                account=self._account(),
                can_sign_out=bool(can_sign_out),
            )
        )
        if summary != self.summary:
            self.summary = summary
            self.summaryChanged.emit(summary)

    def _show_notice(self, notice: Notice) -> None:
        self._last_notice = notice
        icon = {
            Level.INFO: QSystemTrayIcon.MessageIcon.Information,
            Level.WARNING: QSystemTrayIcon.MessageIcon.Warning,
            Level.ERROR: QSystemTrayIcon.MessageIcon.Critical,
        }[notice.level]
        if self.show_tray:
            self.tray.icon.showMessage(notice.title, notice.body, icon, 8000)

    def _notice_clicked(self) -> None:
        if self._last_notice is not None and self._last_notice.opens == "signin":
            self.open_signin()
        elif self._last_notice is not None and self._last_notice.level > Level.INFO:
            self.open_issues()
        else:
            self.open_history()
