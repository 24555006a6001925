"""Names and paths of entries: NFC normalisation and the rules every name must pass.

A bad name is a :class:`~dropline.server.problems.Problem` ``invalid-name`` (400) raised
before anything is touched, so hostile input never reaches the database or disk.
"""

from __future__ import annotations

import unicodedata

from dropline.server.problems import Problem

MAX_NAME_BYTES = 255
MAX_PATH_BYTES = 4096
MAX_DEPTH = 128


def _invalid(detail: str) -> Problem:
    return Problem("invalid-name", detail)


def normalize_name(name: str) -> str:
    """One path component, NFC-normalised and checked; returns the normalised name."""
    if not isinstance(name, str):
        raise _invalid("a name must be a string")
    try:
        # Lone surrogates (possible from JSON "\ud800" escapes) cannot be stored as UTF-8.
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise _invalid("a name must be valid Unicode text") from None
    name = unicodedata.normalize("NFC", name)
    if not name:
        raise _invalid("a name must not be empty")
    if name in {".", ".."}:
        raise _invalid(f"{name!r} is not allowed as a name")
    if "/" in name or "\\" in name:
        raise _invalid(f"a name must not contain '/' or '\\': {name!r}")
    # Category Cc covers NUL, the C0 controls, DEL and the C1 controls.
    if any(unicodedata.category(ch) == "Cc" for ch in name):
        raise _invalid(f"a name must not contain control characters: {name!r}")
    if len(name.encode("utf-8")) > MAX_NAME_BYTES:
        raise _invalid(f"a name must be at most {MAX_NAME_BYTES} bytes in UTF-8")
    return name


def normalize_path(path: str, *, allow_root: bool = False) -> str:
    """An absolute path (``/a/b.txt``), every component checked; returns it normalised.

    Empty components (``//``, a trailing ``/``), ``.`` and ``..`` are refused rather
    than resolved, so a traversal attempt is an error instead of a path that lands
    somewhere unexpected.
    """
    if not isinstance(path, str):
        raise _invalid("a path must be a string")
    if not path.startswith("/"):
        raise _invalid(f"a path must be absolute (start with '/'): {path!r}")
    if path == "/":
        if allow_root:
            return "/"
        raise _invalid("the root folder '/' cannot be used here")
    parts = path[1:].split("/")
    if len(parts) > MAX_DEPTH:
        raise _invalid(f"a path must be at most {MAX_DEPTH} levels deep")
    for part in parts:
        if part == "":
            raise _invalid(f"a path must not contain empty components: {path!r}")
        if "\\" in part:
            raise _invalid(f"a path must not contain '\\': {path!r}")
    normalized = "/" + "/".join(normalize_name(p) for p in parts)
    if len(normalized.encode("utf-8")) > MAX_PATH_BYTES:
        raise _invalid(f"a path must be at most {MAX_PATH_BYTES} bytes in UTF-8")
    return normalized


def split_path(path: str) -> tuple[str, str]:
    """``/a/b.txt`` -> (``/a``, ``b.txt``); the parent of a top-level entry is ``/``."""
    parent, _, name = path.rpartition("/")
    return (parent or "/"), name


def join_path(parent: str, name: str) -> str:
    return ("" if parent == "/" else parent) + "/" + name


def ancestors(path: str) -> list[str]:
    """Every folder above ``path``, outermost first, without the root: ``/a/b/c`` -> [/a, /a/b]."""
    parts = path.split("/")[1:-1]
    return ["/" + "/".join(parts[: i + 1]) for i in range(len(parts))]
