"""Loads the packaged tray and app icons, every rendered size in one QIcon for crisp HiDPI."""

from __future__ import annotations

from functools import cache
from importlib import resources

from PySide6.QtGui import QIcon

SIZES = (16, 22, 24, 32, 48, 64, 128, 256)


def _icon(stem: str) -> QIcon:
    icon = QIcon()
    folder = resources.files("dropline.ui") / "icons"
    for size in SIZES:
        for suffix in ("", "@2x"):
            png = folder / f"{stem}-{size}{suffix}.png"
            if png.is_file():
                icon.addFile(str(png))
    if icon.isNull():
        raise FileNotFoundError(f"icon {stem!r} is missing from the ui package")
    return icon


@cache
def tray_icon(state: str) -> QIcon:
    """The tray icon for a state name of ``dropline.ui.status`` (``"idle"``, ``"syncing"``, ...)."""
    return _icon(f"tray-{state}")


@cache
def app_icon() -> QIcon:
    return _icon("dropline")
