"""No product module grows past 600 lines: a module that long is asking to be split."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PARTS = ("sdk", "sync", "agent", "ui", "server")
MOST_LINES = 600


def test_no_product_module_is_over_600_lines() -> None:
    sizes = {
        str(path.relative_to(ROOT)): len(path.read_text(encoding="utf-8").splitlines())
        for part in PARTS
        for path in (ROOT / part).rglob("*.py")
    }
    assert len(sizes) > 100
    assert {name: n for name, n in sizes.items() if n > MOST_LINES} == {}
