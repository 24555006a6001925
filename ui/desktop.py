"""Opening files and folders with the desktop's own programs, kept inside the sync folders."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QUrl
from PySide6.QtGui import QDesktopServices

log = logging.getLogger(__name__)

# Windows take an opener so tests can watch what would be opened.
Opener = Callable[[Path], bool]


def open_path(path: Path) -> bool:
    """Open a file or folder as a double-click in the file manager would."""
    ok = QDesktopServices.openUrl(QUrl.fromLocalFile(str(path)))
    if not ok:
        log.warning("the desktop could not open %s", path)
    return ok


def open_or_explain(path: Path | None, opener: Opener, explain: Callable[[str], None]) -> None:
    """Open ``path``, or tell the user in plain words why it cannot be opened."""
    if path is None:
        explain("That file is outside its sync folder.")
    elif not path.exists():
        explain(f"{path.name} is no longer on this computer.")
    else:
        opener(path)


def local_file(folder: str, path: str) -> Path | None:
    """The local file behind a record's ``folder`` and ``path``, or None.

    ``path`` is relative to the sync folder (``/sub/q3.pdf``). A path that would
    lead outside the folder (``..``) is refused rather than opened.
    """
    if not folder:
        # The agent's own issues (its config file, say) name an absolute path and no folder.
        return Path(path) if Path(path).is_absolute() else None
    root = Path(folder).resolve()
    relative = path.lstrip("/\\")
    target = (root / relative).resolve() if relative else root
    if target != root and not target.is_relative_to(root):
        log.warning("refusing to open a path outside its sync folder")
        return None
    return target


def containing_folder(folder: str, path: str) -> Path | None:
    """The folder that holds the record's file (the file itself may be gone)."""
    target = local_file(folder, path)
    if target is None:
        return None
    parent = target.parent if not folder or target != Path(folder).resolve() else target
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    return parent
