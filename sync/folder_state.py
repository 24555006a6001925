"""The interface between a folder's loop and its helpers (the round, the actions, the feed):
what each helper may read, write and call on the loop, as protocols the loop satisfies.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from dropline.sdk import DroplineClient, DroplineError
from dropline.sync.ignore import IgnoreRules
from dropline.sync.journal import Journal
from dropline.sync.records import Base, Download, Local, Remote, Upload
from dropline.sync.transfer import Shared
from dropline.sync.types import EngineSettings, Event, FolderSpec


class Hooks(Protocol):
    """What a folder needs from its engine."""

    host: str
    settings: EngineSettings
    shared: Shared

    def client(self) -> DroplineClient: ...
    def publish(self, event: Event) -> None: ...
    def auth_failed(self, exc: DroplineError) -> None: ...
    def signed_out(self) -> bool: ...


class Refresh(Protocol):
    """The part of the remote feed the actions use: look at one path on the server again."""

    def refresh(self, rel: str) -> None: ...


@dataclass
class Finished:
    """A transfer that ended (well or not), waiting for the loop to record it."""

    path: str
    item_time: float | None
    action: Upload | Download
    started: float
    result: tuple[Base, Remote] | Base | None = None
    error: BaseException | None = None


class FolderState(Protocol):
    """One folder's loop as its helpers see it: the fields they read or set, the calls
    they make. :class:`dropline.sync.folder.FolderLoop` is one."""

    # What the folder is.
    id: int
    spec: FolderSpec
    root: Path
    hooks: Hooks
    journal: Journal
    ignore: IgnoreRules
    case_sensitive: bool  # whether the disk under ``root`` tells names apart by case

    # Why the folder may not act now.
    user_paused: bool
    missing: bool
    offline: bool
    guard: str | None  # the kind of the issue that paused the folder (mass delete)
    allow_mass_delete: bool  # the user confirmed the mass delete: the next plan may run it
    restore_deletes: bool  # the user dismissed it: the next plan brings the files back
    rebuilding: bool  # the journal was started anew: plan nothing until the server is listed
    held_deletes: set[str]  # planned deletes held until deletes stop coming (mass-delete guard)
    deletes_due: float  # monotonic time the held deletes may go

    # Work under way.
    dirty: bool  # queued work may be waiting for a round
    holds: dict[str, float]  # path -> monotonic time before which it is not looked at
    closed: set[str]  # paths whose writer closed them: complete, no settling needed
    in_flight: dict[str, asyncio.Task[None]]
    uploading: dict[str, str]  # path -> SHA-256 of the upload running for it
    finished: list[Finished]  # transfers that ended since the loop last looked
    hashes: dict[str, Local]  # hashes of files not synced yet (a retry need not read them)

    @property
    def feed(self) -> Refresh: ...

    def wake(self) -> None: ...
    def queue_changed(self) -> None: ...
    def raise_issue(
        self,
        path: str,
        kind: str,
        message: str,
        hint: str,
        *,
        retry_at: float | None = None,
        related: tuple[str, ...] = (),
    ) -> None: ...
    def retry_later(
        self, path: str, kind: str, message: str, hint: str, *, cap: float = ...
    ) -> None: ...
    def clear_issues(self, path: str, kinds: tuple[str, ...] | None = None) -> None: ...
    def set_online(self) -> None: ...
    def failed_network(self, exc: DroplineError) -> None: ...
    def archive_dir(self) -> Path | None: ...
