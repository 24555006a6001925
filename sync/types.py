"""Neutral records shared by the engine, the agent and the benchmarks.

Frozen dataclasses and enums only: no I/O, no HTTP types (the SDK's models stay
in ``dropline.sdk.models``), so the engine's picture of the world never depends on the
wire format.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path


class FolderMode(StrEnum):
    TWO_WAY = "two-way"
    UPLOAD_ONLY = "upload-only"
    DOWNLOAD_ONLY = "download-only"


class AfterUpload(StrEnum):
    """What an upload-only folder does with a file once the server confirmed its hash."""

    KEEP = "keep"
    ARCHIVE = "archive"
    REMOVE = "remove"


class LocalEdits(StrEnum):
    """What a download-only folder does with a local edit."""

    RESTORE = "restore"
    REPORT = "report"


class State(StrEnum):
    """Per folder and overall. Overall is the most pressing folder state."""

    IDLE = "idle"
    SCANNING = "scanning"
    SYNCING = "syncing"
    PAUSED = "paused"
    OFFLINE = "offline"
    SIGNED_OUT = "signed_out"
    ERROR = "error"


class Direction(StrEnum):
    UP = "up"
    DOWN = "down"


class Result(StrEnum):
    OK = "ok"
    FAILED = "failed"
    CONFLICT = "conflict"
    SKIPPED = "skipped"


@dataclass(frozen=True, slots=True)
class FolderSpec:
    """One sync folder as configured: a local directory mapped to a remote path."""

    local: Path
    remote: str = "/"
    mode: FolderMode = FolderMode.TWO_WAY
    ignore: tuple[str, ...] = ()
    after_upload: AfterUpload = AfterUpload.KEEP
    archive_dir: Path | None = None
    local_edits: LocalEdits = LocalEdits.RESTORE


@dataclass(frozen=True, slots=True)
class EngineSettings:
    concurrency: int = 4
    # Chunks stream from the file (the hash is declared up front, no per-chunk checksum),
    # so a bigger one costs no memory, only fewer PATCH round trips; a server killed
    # mid-chunk loses at most this much.
    chunk_size: int = 32 * 1024 * 1024
    upload_limit_bps: int | None = None  # bytes per second; None is unlimited
    download_limit_bps: int | None = None
    stable_seconds: float = 0.5  # a file must be unchanged this long before upload
    rescan_interval: float = 3600.0
    longpoll_timeout: int = 60
    hostname: str | None = None  # used in conflict-copy names; defaults to the machine's
    # Files up to batch_file_size bytes that are ready together go up in one request
    # (at most batch_files of them, batch_bytes in all); bigger ones take the tus path.
    batch_file_size: int = 1024 * 1024
    batch_files: int = 200
    batch_bytes: int = 8 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class FolderStatus:
    local: str
    remote: str
    mode: FolderMode
    state: State
    pending: int
    last_error: str | None = None


@dataclass(frozen=True, slots=True)
class EngineStatus:
    state: State
    folders: tuple[FolderStatus, ...]
    issues: int
    uploading: int = 0
    downloading: int = 0
    bytes_left: int = 0


@dataclass(frozen=True, slots=True)
class Issue:
    """A per-file problem, in words a user can act on."""

    id: int
    folder: str
    path: str
    kind: str  # stable machine name, e.g. "invalid-name", "unreadable", "conflict", "mass-delete"
    message: str  # what happened, in plain words
    hint: str  # what to do about it
    since: float
    retry_at: float | None = None
    related_paths: tuple[str, ...] = ()  # e.g. both versions of a conflict


@dataclass(frozen=True, slots=True)
class HistoryRow:
    id: int
    time: float
    folder: str
    path: str
    direction: Direction
    size: int
    duration: float
    result: Result
    error: str | None = None


# Events published to subscribers (the agent's control socket carries them).


@dataclass(frozen=True, slots=True)
class StateChanged:
    folder: str | None  # None: the overall state
    state: State


@dataclass(frozen=True, slots=True)
class TransferProgress:
    transfer_id: str
    folder: str
    path: str
    direction: Direction
    bytes_done: int
    bytes_total: int
    bytes_per_second: float = 0.0


@dataclass(frozen=True, slots=True)
class HistoryAdded:
    row: HistoryRow


@dataclass(frozen=True, slots=True)
class IssueRaised:
    issue: Issue


@dataclass(frozen=True, slots=True)
class IssueCleared:
    issue_id: int


Event = StateChanged | TransferProgress | HistoryAdded | IssueRaised | IssueCleared


@dataclass(frozen=True, slots=True)
class HistoryQuery:
    limit: int = 100
    before_id: int | None = None  # paging: rows older than this id
    folder: str | None = None
    direction: Direction | None = None
    result: Result | None = None
    search: str | None = None  # substring of the path, case-insensitive
    since: float | None = None
    until: float | None = None


@dataclass(frozen=True, slots=True)
class EngineCounters:
    """Totals since the engine started (benchmarks and tests read them)."""

    bytes_hashed: int = 0
    bytes_uploaded: int = 0
    bytes_downloaded: int = 0
    files_uploaded: int = 0
    files_downloaded: int = 0
    upload_batches: int = 0  # requests that carried several small files at once
