"""The import rules: ui -> agent -> sync -> sdk -> HTTP -> server, one way; the
server's rooms in their order; no import circle anywhere among product modules."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PARTS = ("sdk", "sync", "agent", "ui", "server")

# What each part may import of the others (its own modules are always allowed).
PART_MAY_IMPORT: dict[str, set[str]] = {
    "sdk": set(),
    "sync": {"dropline.sdk"},
    "agent": {"dropline.sync", "dropline.sdk"},
    # The tray talks to the agent over the control socket only.
    "ui": {"dropline.agent.control", "dropline.agent.paths"},
    "server": set(),
}
# Third-party packages a part must not import.
PART_MAY_NOT_USE: dict[str, set[str]] = {
    "sdk": {"watchdog", "sqlite_utils", "PySide6", "shiboken6", "fastapi", "starlette"},
    "sync": {"PySide6", "shiboken6", "PyQt5", "PyQt6", "fastapi", "starlette"},
    "agent": {"PySide6", "shiboken6", "PyQt5", "PyQt6", "fastapi", "starlette"},
    "ui": {"fastapi", "starlette", "watchdog", "sqlite_utils"},
    "server": {"PySide6", "watchdog", "sqlite_utils"},
}

# The server's rooms, and the rooms each may import. Beside the rooms stand modules
# every room may use (SHARED); ``metrics`` itself reads the storage room.
SHARED = {"problems", "settings", "metrics"}
DOMAIN = {"files", "uploads", "identity", "guard", "audit", "transfers", "webhooks", "admin"}
ROOM_MAY_IMPORT: dict[str, set[str]] = {
    "storage": {"problems", "settings"},
    "audit": {"storage"} | SHARED,
    "identity": {"audit", "storage"} | SHARED,
    "guard": {"identity", "audit", "storage"} | SHARED,
    "files": {"identity", "audit", "storage"} | SHARED,
    "uploads": {"files", "identity", "audit", "storage"} | SHARED,
    "transfers": {"files", "guard", "identity", "audit", "storage"} | SHARED,
    "webhooks": {"guard", "identity", "audit", "storage"} | SHARED,
    "admin": {"guard", "identity", "audit", "storage"} | SHARED,
    "http": DOMAIN | {"storage"} | SHARED,
    "cli": DOMAIN | {"storage", "http"} | SHARED,
    # The shared modules themselves, and ``python -m dropline.server``.
    "problems": set(),
    "settings": set(),
    "metrics": {"storage"},
    "__main__": {"cli"},
}


def within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def module_name(path: Path) -> str:
    """``sync/journal.py`` -> ``dropline.sync.journal``."""
    parts = path.relative_to(ROOT).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(("dropline", *parts))


def product_modules() -> dict[str, Path]:
    return {module_name(p): p for part in PARTS for p in sorted((ROOT / part).rglob("*.py"))}


def imports_of(path: Path, known: Iterable[str]) -> set[str]:
    """Every module a file imports, wherever the import stands (functions and
    ``TYPE_CHECKING`` blocks count). ``from pkg import mod`` counts ``pkg.mod``."""
    known = set(known)
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.level:
                raise AssertionError(f"{path}: relative import; imports are absolute here")
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                found.add(candidate if candidate in known else node.module)
    return found


def import_graph(modules: Mapping[str, Path]) -> dict[str, set[str]]:
    return {
        name: {m for m in imports_of(path, modules) if m in modules and m != name}
        for name, path in modules.items()
    }


def find_cycles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return cycles


def room_of(module: str) -> str | None:
    """``dropline.server.files.entries`` -> ``files``; a shared module is a room of its own."""
    parts = module.split(".")
    if parts[:2] != ["dropline", "server"] or len(parts) < 3:
        return None
    return parts[2]


def room_offences(graph: Mapping[str, set[str]]) -> list[str]:
    offences = []
    for source, targets in graph.items():
        room = room_of(source)
        if room is None:
            continue
        for target in targets:
            other = room_of(target)
            if other is not None and other != room and other not in ROOM_MAY_IMPORT[room]:
                offences.append(f"{source} ({room}) imports {target} ({other})")
    return sorted(offences)


@pytest.fixture(scope="module")
def modules() -> dict[str, Path]:
    return product_modules()


@pytest.fixture(scope="module")
def graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    return import_graph(modules)


@pytest.mark.parametrize("part", PARTS)
def test_part_imports_only_the_parts_below_it(part: str, modules: dict[str, Path]) -> None:
    own = f"dropline.{part}"
    allowed = PART_MAY_IMPORT[part]
    offences = []
    for name, path in modules.items():
        if not (name == own or name.startswith(own + ".")):
            continue
        for target in imports_of(path, modules):
            root = target.split(".")[0]
            if root in PART_MAY_NOT_USE[part]:
                offences.append(f"{name} imports {target}")
            elif root in PARTS:
                offences.append(f"{name} imports {target}: say dropline.{target}")
            elif root == "dropline" and target not in ("dropline",):
                inside = target == own or target.startswith(own + ".")
                if not inside and not any(
                    target == a or target.startswith(a + ".") for a in allowed
                ):
                    offences.append(f"{name} imports {target}")
    assert not offences, offences


def test_every_server_module_belongs_to_a_room(modules: dict[str, Path]) -> None:
    rooms = {room_of(m) for m in modules} - {None}
    assert rooms == set(ROOM_MAY_IMPORT), rooms ^ set(ROOM_MAY_IMPORT)


def test_server_rooms_import_only_the_rooms_below_them(graph: dict[str, set[str]]) -> None:
    assert room_offences(graph) == []


def test_no_import_circle_among_product_modules(graph: dict[str, set[str]]) -> None:
    assert find_cycles(graph) == []


def test_sdk_import_loads_no_engine_database_watcher_or_qt() -> None:
    code = (
        "import sys, dropline.sdk\n"
        "print('\\n'.join(sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'watchdog', 'sqlite_utils', 'PySide6', 'fastapi', 'starlette'} "
        "or m.startswith(('dropline.sync', 'dropline.agent', 'dropline.ui', 'dropline.server')))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == []


# -- the checkers themselves catch what they are for ------------------------------------


def test_import_finder_sees_imports_in_functions_and_type_checking(tmp_path: Path) -> None:
    source = tmp_path / "mod.py"
    source.write_text(
        "from typing import TYPE_CHECKING\n"
        "from dropline.sync import fs\n"
        "if TYPE_CHECKING:\n"
        "    from dropline.sync.folder import FolderLoop\n"
        "def f():\n"
        "    import dropline.server.http.app\n"
    )
    known = {"dropline.sync.fs", "dropline.sync.folder", "dropline.server.http.app"}
    assert known <= imports_of(source, known)


def test_cycle_finder_reports_a_circle_and_not_a_chain() -> None:
    chain = {"a": {"b"}, "b": {"c"}, "c": set()}
    assert find_cycles(chain) == []
    circle = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycles(circle) == [["a", "b", "c"]]


def test_room_checker_reports_a_domain_room_importing_http() -> None:
    graph = {
        "dropline.server.files.entries": {"dropline.server.http.app"},
        "dropline.server.storage.db": {"dropline.server.files.entries"},
        "dropline.server.http.app": {"dropline.server.files.entries"},
    }
    assert room_offences(graph) == [
        "dropline.server.files.entries (files) imports dropline.server.http.app (http)",
        "dropline.server.storage.db (storage) imports dropline.server.files.entries (files)",
    ]
