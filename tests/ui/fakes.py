"""Records and a history source shaped like the agent's, for testing models and windows."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from dropline.agent.control.protocol import HistoryRowJSON, IssueJSON, ProgressJSON
from dropline.ui.models import HistoryFilter

Deliver = Callable[[Sequence[HistoryRowJSON] | None], None]


def history_row(
    n: int,
    path: str | None = None,
    folder: str = "/home/ann/Reports",
    direction: str = "up",
    result: str = "ok",
    size: int = 1000,
) -> HistoryRowJSON:
    return {
        "id": n,
        "time": 1_764_000_000.0 + n,
        "folder": folder,
        "path": path or f"file-{n:04d}.txt",
        "direction": direction,
        "size": size,
        "duration": 0.5,
        "result": result,
        "error": "disk full" if result == "failed" else None,
    }


class FakeHistory:
    """The agent's ``history.query`` over a list, newest first, with its filters."""

    def __init__(self, rows: list[HistoryRowJSON], answer_now: bool = True) -> None:
        self.rows = sorted(rows, key=lambda r: -r["id"])
        self.answer_now = answer_now
        self.calls: list[dict[str, Any]] = []
        self.pending: list[tuple[dict[str, Any], Deliver]] = []
        self.fail = False

    def __call__(self, args: dict[str, Any], deliver: Deliver) -> None:
        self.calls.append(args)
        if self.answer_now:
            deliver(None if self.fail else self.page(args))
        else:
            self.pending.append((args, deliver))

    def page(self, args: dict[str, Any]) -> list[HistoryRowJSON]:
        filt = HistoryFilter(
            folder=args.get("folder"),
            direction=args.get("direction"),
            result=args.get("result"),
            search=args.get("search"),
            since=args.get("since"),
            until=args.get("until"),
        )
        before = args.get("before_id")
        rows = [r for r in self.rows if filt.matches(r) and (before is None or r["id"] < before)]
        return rows[: args["limit"]]

    def answer(self) -> None:
        args, deliver = self.pending.pop(0)
        deliver(self.page(args))


def progress(tid: str, done: int, total: int = 1000, bps: float = 100.0) -> ProgressJSON:
    return {
        "transfer_id": tid,
        "folder": "/home/ann/Reports",
        "path": f"{tid}.bin",
        "direction": "up",
        "bytes_done": done,
        "bytes_total": total,
        "bytes_per_second": bps,
    }


def issue(n: int, kind: str = "invalid-name", since: float = 1000.0) -> IssueJSON:
    return {
        "id": n,
        "folder": "/home/ann/Reports",
        "path": f"bad{n}:name.txt",
        "kind": kind,
        "message": "This name can't be used on the server because it contains ':'.",
        "hint": "Rename the file.",
        "since": since + n,
        "retry_at": None,
        "related_paths": [],
    }
