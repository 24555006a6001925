"""An agent's request side for testing windows that ask it themselves: answers come later.

Each op is answered by a handler (a result dict, or a ``ControlError`` raised),
on a later turn of the event loop, as the real link's worker thread answers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QTimer

from dropline.agent.control import ControlError
from dropline.agent.control.protocol import RevisionJSON, TrashItemJSON
from dropline.ui.workers import OnDone, OnError

Handler = Callable[[dict[str, Any]], dict[str, Any]]


class FakeAgent:
    def __init__(self, handlers: dict[str, Handler] | None = None) -> None:
        self.handlers: dict[str, Handler] = dict(handlers or {})
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def __call__(
        self,
        op: str,
        args: dict[str, Any] | None = None,
        on_done: OnDone | None = None,
        on_error: OnError | None = None,
    ) -> None:
        given = dict(args or {})
        self.calls.append((op, given))

        def answer() -> None:
            try:
                handler = self.handlers.get(op)
                if handler is None:
                    raise ControlError("unknown-op", f"unknown operation {op!r}")
                result = handler(given)
            except ControlError as exc:
                if on_error is not None:
                    on_error(exc)
            else:
                if on_done is not None:
                    on_done(result)

        QTimer.singleShot(0, answer)

    def ops(self, op: str) -> list[dict[str, Any]]:
        return [args for name, args in self.calls if name == op]


def revision(n: int, current: bool = False, email: str | None = "ann@example.com") -> RevisionJSON:
    return {
        "rev": f"r{n}",
        "size": 1000 * n,
        "sha256": f"{n:064x}",
        "mtime": 1_764_000_000.0 + n,
        "created_at": 1_764_000_000.0 + 3600 * n,
        "user": {"id": "u1", "email": email} if email else None,
        "client": "dropline-agent/0.1.0" if n % 2 else "web",
        "current": current,
    }


def trash_item(
    n: int, name: str, folder: str = "/home/ann/Reports", sub: str = "", taken: bool = False
) -> TrashItemJSON:
    local = f"{folder}/{sub + '/' if sub else ''}{name}"
    return {
        "id": f"t{n}",
        "name": name,
        "path": f"/Reports/{sub + '/' if sub else ''}{name}",
        "type": "file",
        "size": 2048,
        "sha256": f"{n:064x}",
        "rev": f"r{n}",
        "trashed_at": 1_764_000_000.0 + n,
        "files": 1,
        "path_taken": taken,
        "folder": folder,
        "local": local,
    }
