"""What the bundles leave out: Python packages no Dropline command imports, and the Qt
plugins, translations and libraries the tray does not need (the spec files use this)."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterable
from pathlib import PurePosixPath

# Build and test tools, and optional extras of third-party packages that we never turn on.
EXCLUDES = [
    "tkinter",
    "_tkinter",
    "test",
    "unittest",
    "pytest",
    "_pytest",
    "hypothesis",
    "pydoc_data",
    "lib2to3",
    "idlelib",
    "setuptools",
    "pkg_resources",
    "pip",
    "IPython",
    "numpy",
    "pandas",
    "mypy",
    # uvicorn's --reload and YAML logging config: `serve` uses neither.
    "watchfiles",
    "yaml",
]

# Each executable is analysed on its own: these keep one from pulling in another's stack.
NOT_IN_AGENT = ["PySide6", "shiboken6", "fastapi", "starlette", "uvicorn", "uvloop", "sqlalchemy"]
NOT_IN_SERVER = ["PySide6", "shiboken6", "watchdog", "sqlite_utils", "keyring"]

# The tray imports QtCore, QtGui and QtWidgets only.
_QT_UNUSED_NAMES = (
    "QtConcurrent QtDBus QtDesigner QtHelp QtNetwork QtOpenGL QtOpenGLWidgets QtPrintSupport "
    "QtQml QtQuick QtQuickControls2 QtQuickTest QtQuickWidgets QtSql QtSvg QtSvgWidgets QtTest "
    "QtUiTools QtXml"
)
QT_UNUSED = [f"PySide6.{name}" for name in _QT_UNUSED_NAMES.split(" ")]

QT_PLUGINS = PurePosixPath("PySide6/Qt/plugins")
# The Qt plugins the tray ships: X11 and the offscreen platform (tests, headless
# diagnostics), the desktop portal theme, and input methods. Everything else the Qt
# hooks collect (Wayland, EGLFS, VNC, the GTK theme, image formats beyond the built-in
# PNG, OpenGL integrations) pulls in libraries a tray of PNG icons never uses; under a
# Wayland session Qt falls back to xcb through XWayland.
QT_PLUGINS_KEPT = frozenset(
    {
        "platforms/libqxcb.so",
        "platforms/libqoffscreen.so",
        "platformthemes/libqxdgdesktopportal.so",
        "platforminputcontexts/libcomposeplatforminputcontextplugin.so",
        "platforminputcontexts/libibusplatforminputcontextplugin.so",
    }
)
# Qt's own translations: the tray's words are English and it loads no QTranslator.
QT_TRANSLATIONS = PurePosixPath("PySide6/Qt/translations")

Entry = tuple[str, str, str]  # PyInstaller's TOC entry: (name in bundle, source, type)


def _plugin(name: str) -> str | None:
    path = PurePosixPath(name)
    if QT_PLUGINS in path.parents:
        return path.relative_to(QT_PLUGINS).as_posix()
    return None


def _needs(source: str) -> set[str]:
    """The shared libraries ``source`` loads, directly or not (by soname, as ldd resolves)."""
    out = subprocess.run(["ldd", source], capture_output=True, text=True, check=False).stdout
    return set(re.findall(r"^\s*(\S+) => ", out, re.MULTILINE))


def trim_qt(binaries: Iterable[Entry], datas: Iterable[Entry]) -> tuple[list[Entry], list[Entry]]:
    """Drop the unused Qt plugins, and the libraries that only they needed."""
    binaries, datas = list(binaries), list(datas)
    dropped = [e for e in binaries if (p := _plugin(e[0])) is not None and p not in QT_PLUGINS_KEPT]
    candidates: set[str] = set()
    for _name, source, _kind in dropped:
        candidates |= _needs(source)
    kept = [e for e in binaries if e not in dropped]
    # A library stays when anything that stays needs it.
    needed: set[str] = set()
    for name, source, _kind in kept:
        if PurePosixPath(name).name not in candidates:
            needed |= _needs(source)
    unused = candidates - needed
    # PyInstaller lists the top-level symbolic links to Qt's libraries among the data.
    binaries = [e for e in kept if PurePosixPath(e[0]).name not in unused]
    datas = [
        e
        for e in datas
        if PurePosixPath(e[0]).name not in unused
        and QT_TRANSLATIONS not in PurePosixPath(e[0]).parents
    ]
    return binaries, datas
