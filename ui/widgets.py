"""Pieces every tray window shares: the window frame, a message banner, empty states."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QKeySequence, QPalette, QShortcut
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from dropline.ui.icons import app_icon

# Accent colours that read on light and dark backgrounds; text stays the palette's.
INFO_ACCENT = "#1a73e8"
WARNING_ACCENT = "#e37400"
ERROR_ACCENT = "#d93025"
OK_ACCENT = "#188038"


def heading(text: str, scale: float = 1.35) -> QLabel:
    label = QLabel(text)
    font = label.font()
    font.setPointSizeF(font.pointSizeF() * scale)
    font.setBold(True)
    label.setFont(font)
    label.setAccessibleName(text)
    return label


def muted(text: str = "") -> QLabel:
    """Secondary text in the palette's placeholder colour (right in light and dark themes)."""
    label = QLabel(text)
    label.setWordWrap(True)
    # A role, not a copied colour: it follows the palette when the theme changes.
    label.setForegroundRole(QPalette.ColorRole.PlaceholderText)
    return label


def make_primary(button: QPushButton) -> QPushButton:
    """The one action a window is for, filled with the theme's highlight colour."""
    button.setObjectName("primary")
    button.setDefault(True)
    button.setStyleSheet(
        "QPushButton#primary { background: palette(highlight); color: palette(highlighted-text);"
        " border: 1px solid palette(highlight); border-radius: 4px; padding: 5px 16px; }"
        "QPushButton#primary:disabled { background: palette(mid); border-color: palette(mid); }"
        "QPushButton#primary:focus { border: 1px solid palette(text); }"
    )
    return button


class Banner(QFrame):
    """A one-line message above a window's content: connecting, an error, a result."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("banner")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(10, 6, 6, 6)
        self.label = QLabel()
        self.label.setWordWrap(True)
        self.label.setTextFormat(Qt.TextFormat.PlainText)  # messages carry file names
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.label, 1)
        self.close_button = QPushButton("Dismiss")
        self.close_button.setFlat(True)
        self.close_button.clicked.connect(self.hide)
        layout.addWidget(self.close_button)
        self.hide()

    def show_message(self, text: str, accent: str = INFO_ACCENT, closable: bool = True) -> None:
        # Only the left edge is coloured, so the banner suits any theme.
        self.setStyleSheet(
            f"QFrame#banner {{ border: 1px solid palette(mid); border-left: 4px solid {accent};"
            " border-radius: 3px; }"
        )
        self.label.setText(text)
        self.close_button.setVisible(closable)
        self.show()

    def text(self) -> str:
        return "" if self.isHidden() else self.label.text()


class EmptyState(QWidget):
    """What a window shows instead of an empty table: a title and a sentence of help."""

    def __init__(self, title: str, text: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QVBoxLayout(self)
        layout.addStretch(1)
        self.title = heading(title, 1.15)
        self.title.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.text = muted(text)
        self.text.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.text.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Minimum)
        layout.addWidget(self.title)
        layout.addWidget(self.text)
        layout.addStretch(2)

    def set_text(self, title: str, text: str) -> None:
        self.title.setText(title)
        self.text.setText(text)


class ToolWindow(QWidget):
    """A top-level tray window: titled, with the app icon; Escape hides it, the tray lives on."""

    def __init__(self, title: str, parent: QWidget | None = None) -> None:
        super().__init__(parent, Qt.WindowType.Window)
        self.setWindowTitle(f"{title} - Dropline")
        self.setWindowIcon(app_icon())
        self.banner = Banner(self)
        self.connection_banner = Banner(self)
        self.connection_banner.close_button.hide()
        QShortcut(QKeySequence(Qt.Key.Key_Escape), self, self.close)
        QShortcut(QKeySequence(QKeySequence.StandardKey.Close), self, self.close)

    def set_connected(self, connected: bool, reason: str = "") -> None:
        """Say so while the agent is out of reach; actions would fail meanwhile."""
        if connected:
            self.connection_banner.hide()
        else:
            text = "Connecting to the Dropline service…"
            if reason:
                text += f" {reason}"
            self.connection_banner.show_message(text, WARNING_ACCENT, closable=False)

    def bring_up(self) -> None:
        self.show()
        self.setWindowState(self.windowState() & ~Qt.WindowState.WindowMinimized)
        self.raise_()
        self.activateWindow()
