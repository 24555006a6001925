"""Qt runs offscreen for every UI test: no display, no window manager."""

from __future__ import annotations

import os

# Before any Qt import: pytest-qt creates the QApplication on first use.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pytest
from PySide6.QtWidgets import QApplication


@pytest.fixture(autouse=True)
def _qt_application(qapp: QApplication) -> QApplication:
    """Every UI test runs with the application (timers and signals need its event loop)."""
    return qapp
