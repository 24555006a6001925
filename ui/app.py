"""``dropline-tray``: starts the Qt application, the agent link and the tray.

dropline-tray [--home DIR] [--config FILE] [--no-start-agent] [--theme system|light|dark]
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import sys
from pathlib import Path

from PySide6.QtCore import QSocketNotifier, Qt, QTimer
from PySide6.QtGui import QColor, QGuiApplication, QPalette
from PySide6.QtWidgets import QApplication, QSystemTrayIcon

from dropline import __version__
from dropline.ui.controller import TrayApp
from dropline.ui.icons import app_icon
from dropline.ui.workers import AgentLink, LinkOptions

log = logging.getLogger(__name__)

HOME_ENV = "DROPLINE_AGENT_HOME"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="dropline-tray", description="The Dropline tray app: status, transfers, history."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "--home",
        type=Path,
        default=os.environ.get(HOME_ENV) or None,
        help=f"the agent's home directory (default: ${HOME_ENV}, then the platform's)",
    )
    parser.add_argument("--config", type=Path, help="the agent's config file, if not in its home")
    parser.add_argument(
        "--no-start-agent",
        action="store_true",
        help="do not start the agent when it is not running; wait for it instead",
    )
    parser.add_argument(
        "--theme",
        choices=("system", "light", "dark"),
        default="system",
        help="colour scheme (default: follow the desktop)",
    )
    parser.add_argument("--log-level", default="WARNING", help="logging level (default WARNING)")
    return parser.parse_args(argv)


def dark_palette() -> QPalette:
    """Fusion's colours for a dark desktop, for platforms that do not supply one."""
    p = QPalette()
    base, window, text = QColor("#1f2023"), QColor("#2b2d31"), QColor("#e8eaed")
    disabled = QColor("#80868b")
    for role, colour in (
        (QPalette.ColorRole.Window, window),
        (QPalette.ColorRole.WindowText, text),
        (QPalette.ColorRole.Base, base),
        (QPalette.ColorRole.AlternateBase, QColor("#26282c")),
        (QPalette.ColorRole.ToolTipBase, window),
        (QPalette.ColorRole.ToolTipText, text),
        (QPalette.ColorRole.Text, text),
        (QPalette.ColorRole.Button, QColor("#35373c")),
        (QPalette.ColorRole.ButtonText, text),
        (QPalette.ColorRole.BrightText, QColor("#ffffff")),
        (QPalette.ColorRole.Highlight, QColor("#3b82f6")),
        (QPalette.ColorRole.HighlightedText, QColor("#ffffff")),
        (QPalette.ColorRole.Link, QColor("#8ab4f8")),
        (QPalette.ColorRole.PlaceholderText, QColor("#9aa0a6")),
        (QPalette.ColorRole.Mid, QColor("#4a4d52")),
        (QPalette.ColorRole.Dark, QColor("#18191b")),
        (QPalette.ColorRole.Light, QColor("#45484d")),
    ):
        p.setColor(role, colour)
    for role in (
        QPalette.ColorRole.WindowText,
        QPalette.ColorRole.Text,
        QPalette.ColorRole.ButtonText,
    ):
        p.setColor(QPalette.ColorGroup.Disabled, role, disabled)
    return p


def apply_theme(app: QApplication, theme: str) -> None:
    """Light or dark on request; otherwise the desktop's scheme, where it reports one."""
    scheme = app.styleHints().colorScheme()
    dark = theme == "dark" or (theme == "system" and scheme == Qt.ColorScheme.Dark)
    if theme == "system" and not dark:
        return  # the platform's own style and palette
    app.setStyle("Fusion")
    app.setPalette(dark_palette() if dark else app.style().standardPalette())


def make_application(theme: str = "system") -> QApplication:
    existing = QApplication.instance()
    if isinstance(existing, QApplication):
        app = existing
    else:
        QGuiApplication.setHighDpiScaleFactorRoundingPolicy(
            Qt.HighDpiScaleFactorRoundingPolicy.PassThrough
        )
        app = QApplication(sys.argv[:1])
    app.setApplicationName("Dropline")
    app.setApplicationDisplayName("Dropline")
    app.setDesktopFileName("dropline-tray")
    app.setWindowIcon(app_icon())
    app.setQuitOnLastWindowClosed(False)  # the tray lives on when its windows close
    apply_theme(app, theme)
    return app


def install_signal_handlers(tray: TrayApp) -> QSocketNotifier:
    """SIGINT/SIGTERM quit cleanly, delivered through a socket Qt watches.

    Python runs signal handlers only between bytecodes, which never happens while Qt
    sits in its event loop; a wakeup socket wakes the loop without a polling timer.
    """
    reader, writer = socket.socketpair()
    reader.setblocking(False)
    writer.setblocking(False)
    signal.set_wakeup_fd(writer.fileno())
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: None)
    notifier = QSocketNotifier(reader.fileno(), QSocketNotifier.Type.Read)

    def woken() -> None:
        try:
            reader.recv(64)
        except BlockingIOError:
            return
        QTimer.singleShot(0, tray.quit)

    notifier.activated.connect(woken)
    notifier.setProperty("sockets", (reader, writer))  # keep both ends alive with the notifier
    return notifier


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    app = make_application(args.theme)
    link = AgentLink(
        LinkOptions(home=args.home, config=args.config, start_agent=not args.no_start_agent)
    )
    tray = TrayApp(link)
    notifier = install_signal_handlers(tray)
    tray.start()
    log.info("tray running; agent socket %s", link.socket_path)
    if not QSystemTrayIcon.isSystemTrayAvailable():
        # No tray on this desktop: the transfers window stands in so the app is reachable.
        log.warning("this desktop has no system tray; showing the transfers window")
        tray.open_transfers()
    code = app.exec()
    notifier.setEnabled(False)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
