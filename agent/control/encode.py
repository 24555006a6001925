"""Engine records (``dropline.sync.types``) as the control protocol's JSON; used by the agent only.

Kept apart from ``protocol`` so the tray, which imports the protocol, never
imports the engine's modules.
"""

from __future__ import annotations

from typing import Any

from dropline.agent.control.protocol import EventName
from dropline.sync.types import (
    EngineStatus,
    Event,
    FolderStatus,
    HistoryAdded,
    HistoryRow,
    Issue,
    IssueCleared,
    IssueRaised,
    StateChanged,
    TransferProgress,
)


def folder_status(f: FolderStatus) -> dict[str, Any]:
    return {
        "local": f.local,
        "remote": f.remote,
        "mode": str(f.mode),
        "state": str(f.state),
        "pending": f.pending,
        "last_error": f.last_error,
    }


def status(s: EngineStatus) -> dict[str, Any]:
    return {
        "state": str(s.state),
        "folders": [folder_status(f) for f in s.folders],
        "issues": s.issues,
        "uploading": s.uploading,
        "downloading": s.downloading,
        "bytes_left": s.bytes_left,
    }


def history_row(r: HistoryRow) -> dict[str, Any]:
    return {
        "id": r.id,
        "time": r.time,
        "folder": r.folder,
        "path": r.path,
        "direction": str(r.direction),
        "size": r.size,
        "duration": r.duration,
        "result": str(r.result),
        "error": r.error,
    }


def issue(i: Issue) -> dict[str, Any]:
    return {
        "id": i.id,
        "folder": i.folder,
        "path": i.path,
        "kind": i.kind,
        "message": i.message,
        "hint": i.hint,
        "since": i.since,
        "retry_at": i.retry_at,
        "related_paths": list(i.related_paths),
    }


def event(e: Event) -> tuple[EventName, dict[str, Any]] | None:
    if isinstance(e, StateChanged):
        return "state", {"folder": e.folder, "state": str(e.state)}
    if isinstance(e, TransferProgress):
        return "progress", {
            "transfer_id": e.transfer_id,
            "folder": e.folder,
            "path": e.path,
            "direction": str(e.direction),
            "bytes_done": e.bytes_done,
            "bytes_total": e.bytes_total,
            "bytes_per_second": e.bytes_per_second,
        }
    if isinstance(e, HistoryAdded):
        return "history", {"row": history_row(e.row)}
    if isinstance(e, IssueRaised):
        return "issue_raised", {"issue": issue(e.issue)}
    if isinstance(e, IssueCleared):
        return "issue_cleared", {"id": e.issue_id}
    return None
