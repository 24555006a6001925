"""Which local names the engine leaves alone: temporary and system files by default,
the engine's own files always, plus per-folder gitignore-style patterns (pathspec)."""

from __future__ import annotations

from collections.abc import Iterable

import pathspec

from dropline.sync.fs import ENGINE_DIR

DEFAULT_PATTERNS: tuple[str, ...] = (
    "~$*",  # Office owner files
    ".~lock.*#",  # LibreOffice locks
    ".~lock.*",
    "*.tmp",
    "*.temp",
    "*.part",
    "*.partial",
    "*.crdownload",
    "*.download",
    "*.swp",
    "*.swx",
    ".*.swp",
    "*~",
    ".#*",
    ".DS_Store",
    "._*",
    ".Spotlight-V100/",
    ".Trashes/",
    ".fseventsd/",
    "Thumbs.db",
    "ehthumbs.db",
    "desktop.ini",
    "$RECYCLE.BIN/",
    ".goutputstream-*",
)

# Never synced whatever the configuration says: the engine's own directory.
ENGINE_PATTERNS: tuple[str, ...] = (f"/{ENGINE_DIR}/",)


class IgnoreRules:
    """Matches relative paths (``a/b.txt``) against the default, engine and folder patterns."""

    def __init__(self, patterns: Iterable[str] = (), *, defaults: bool = True) -> None:
        lines = [*ENGINE_PATTERNS, *(DEFAULT_PATTERNS if defaults else ()), *patterns]
        self.patterns = tuple(lines)
        self._spec = pathspec.GitIgnoreSpec.from_lines(lines)

    def ignored(self, rel: str, is_dir: bool = False) -> bool:
        if not rel:
            return False
        return bool(self._spec.match_file(rel + "/" if is_dir else rel))

    def ignored_any(self, rel: str) -> bool:
        """For watcher events whose type is not known: the path itself or any parent."""
        if self.ignored(rel) or self.ignored(rel, True):
            return True
        parts = rel.split("/")
        return any(self.ignored("/".join(parts[:i]), True) for i in range(1, len(parts)))
