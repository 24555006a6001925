"""The import rules of DESIGN.md: ui -> agent -> sync -> HTTP -> server, one way."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

FORBIDDEN = {
    "sync": {"server", "agent", "ui", "PySide6", "PyQt5", "PyQt6", "shiboken6"},
    "agent": {"server", "ui", "PySide6", "PyQt5", "PyQt6"},
    "ui": {"server", "sync"},
    "server": {"sync", "agent", "ui", "PySide6"},
}


def imported_roots(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    roots: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def package_files(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_only_what_its_layer_allows(package: str) -> None:
    files = package_files(package)
    assert files, f"{package}/ has no modules"
    offenders = {
        f"{path.relative_to(ROOT)} imports {name}"
        for path in files
        for name in imported_roots(path) & FORBIDDEN[package]
    }
    assert not offenders, sorted(offenders)


def test_checker_sees_a_forbidden_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("from dropline.server.http.app import create_app\nimport PySide6.QtCore\n")
    assert {"server", "PySide6"} <= imported_roots(bad)
