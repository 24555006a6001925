"""The sign-in window: starts the agent's browser sign-in and follows it to the result."""

from __future__ import annotations

from html import escape
from typing import Any

from PySide6.QtCore import Qt, QUrl, Signal
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from dropline.ui.icons import app_icon
from dropline.ui.widgets import ERROR_ACCENT, OK_ACCENT, ToolWindow, heading, make_primary, muted


class SignInWindow(ToolWindow):
    """Shows one sign-in state of the agent (``signin`` record) and the action it offers."""

    startRequested = Signal(bool)  # device flow?

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Sign in", parent)
        self.setMinimumWidth(500)
        self.state: dict[str, Any] = {"state": "signed_out", "method": None}
        self.server_url = ""

        logo = QLabel()
        logo.setPixmap(app_icon().pixmap(56, 56))
        logo.setAlignment(Qt.AlignmentFlag.AlignTop)
        self.title = heading("Sign in to Dropline")
        self.text = QLabel()
        self.text.setWordWrap(True)
        self.server = muted()
        self.server.setTextFormat(Qt.TextFormat.PlainText)
        self.progress = QProgressBar()
        self.progress.setRange(0, 0)  # busy: the browser is in charge now
        self.progress.setTextVisible(False)
        self.progress.setAccessibleName("Waiting for the browser")
        self.code = QLabel()
        self.code.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.code.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        font = self.code.font()
        font.setPointSizeF(font.pointSizeF() * 2)
        font.setBold(True)
        font.setLetterSpacing(font.SpacingType.AbsoluteSpacing, 3)
        self.code.setFont(font)
        self.link = QLabel()
        self.link.setOpenExternalLinks(False)
        self.link.setTextInteractionFlags(Qt.TextInteractionFlag.TextBrowserInteraction)
        self.link.linkActivated.connect(lambda url: QDesktopServices.openUrl(QUrl(url)))

        self.primary = make_primary(QPushButton("Sign in with browser"))
        self.device = QPushButton("Use a code instead")
        self.device.setFlat(True)
        self.device.setToolTip("For computers where the browser cannot come back to Dropline")
        self.close_button = QPushButton("Close")

        text_column = QVBoxLayout()
        text_column.setSpacing(8)
        text_column.addWidget(self.title)
        text_column.addWidget(self.text)
        text_column.addWidget(self.server)
        text_column.addWidget(self.code)
        text_column.addWidget(self.link)
        text_column.addWidget(self.progress)
        top = QHBoxLayout()
        top.setSpacing(16)
        top.addWidget(logo, 0, Qt.AlignmentFlag.AlignTop)
        top.addLayout(text_column, 1)
        buttons = QHBoxLayout()
        buttons.addWidget(self.device)
        buttons.addStretch(1)
        buttons.addWidget(self.close_button)
        buttons.addWidget(self.primary)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(20, 18, 20, 18)
        layout.setSpacing(12)
        layout.addWidget(self.connection_banner)
        layout.addWidget(self.banner)
        layout.addLayout(top)
        layout.addStretch(1)
        layout.addLayout(buttons)

        self.primary.clicked.connect(self._primary_clicked)
        self.device.clicked.connect(lambda: self.startRequested.emit(True))
        self.close_button.clicked.connect(self.close)
        self.show_state(self.state)

    def set_server(self, url: str | None) -> None:
        self.server_url = url or ""
        self.server.setText(f"Server: {url}" if url else "")

    def show_state(self, state: dict[str, Any], signed_out_before: bool = False) -> None:
        """Render a ``signin`` record. ``signed_out_before``: the account was signed out."""
        self.state = dict(state)
        name = state.get("state")
        self.banner.hide()
        self.code.hide()
        self.link.hide()
        self.progress.hide()
        self.device.show()
        self.primary.setEnabled(True)
        if name == "pending":
            self.title.setText("Continue in your browser")
            url = state.get("url")
            if state.get("user_code"):
                self.text.setText("Open the page below and enter this code:")
                self.code.setText(str(state["user_code"]))
                self.code.show()
            else:
                self.text.setText(
                    "Your browser has opened the sign-in page. Dropline continues "
                    "by itself once you have signed in there."
                )
            if url:
                # A device code is typed on another device: the link must be readable there.
                label = escape(url) if state.get("user_code") else "Open the sign-in page again"
                self.link.setText(f'<a href="{escape(url)}">{label}</a>')
                self.link.setToolTip(url)
                self.link.show()
            self.progress.show()
            self.primary.setText("Waiting…")
            self.primary.setEnabled(False)
            self.device.hide()
        elif name == "signed_in":
            self.title.setText("You are signed in")
            self.text.setText("Dropline is syncing your folders. You can close this window.")
            self.banner.show_message("Signed in.", OK_ACCENT)
            self.primary.setText("Done")
            self.device.hide()
        elif name == "failed":
            self.title.setText("Sign-in did not work")
            self.text.setText("Nothing was changed. You can try again.")
            self.banner.show_message(str(state.get("error") or "The sign-in failed."), ERROR_ACCENT)
            self.primary.setText("Try again")
        else:
            if signed_out_before:
                self.title.setText("You are signed out")
                self.text.setText(
                    "Your files and changes are kept on this computer and will sync "
                    "as soon as you sign in again."
                )
                self.primary.setText("Sign in again")
            else:
                self.title.setText("Sign in to Dropline")
                self.text.setText(
                    "Your browser will open so you can sign in with your organisation's "
                    "account. No password is stored on this computer."
                )
                self.primary.setText("Sign in with browser")

        self.adjustSize()  # each state has its own amount of text

    def _primary_clicked(self) -> None:
        if self.state.get("state") == "signed_in":
            self.close()
        else:
            self.startRequested.emit(False)

    def show_error(self, message: str) -> None:
        self.banner.show_message(message, ERROR_ACCENT)
