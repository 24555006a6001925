"""The Qt binding keeps Python's reference counts: a long-running tray depends on it.

PySide6 6.12.0 on CPython 3.11 dropped a reference to None on every call that
returns it (and to True/False on bool signals), so the tray aborted with
"none_dealloc" after a few thousand calls; pyproject.toml keeps us below it.
"""

from __future__ import annotations

import sys

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QLabel
from pytestqt.qtbot import QtBot

CALLS = 2000


class _Emitter(QObject):
    flag = Signal(bool)


def test_calls_returning_none_keep_its_reference_count(qtbot: QtBot) -> None:
    label = QLabel()
    qtbot.addWidget(label)
    before = sys.getrefcount(None)
    for _ in range(CALLS):
        label.setText("x")
    assert abs(sys.getrefcount(None) - before) < CALLS // 10


def test_bool_signals_keep_the_reference_count_of_true(qtbot: QtBot) -> None:
    emitter = _Emitter()
    received: list[bool] = []
    emitter.flag.connect(received.append)
    before = sys.getrefcount(True)
    for _ in range(CALLS):
        emitter.flag.emit(True)
    received.clear()
    assert abs(sys.getrefcount(True) - before) < CALLS // 10
