"""A file that goes (moved or deleted) between the plan to upload it and the upload's
first read: the SDK cannot open it, and the engine waits for the watcher to say where it
went instead of recording "the server refused this" against a path that no longer exists
(an issue that stayed in the tray after everything had synced)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

from dropline.sdk import ApiKeyCredentials, DroplineClient, DroplineError, upload_file
from dropline.sync import folder_actions
from dropline.sync.folder_state import FolderState

pytestmark = pytest.mark.anyio


class RecordingFolder:
    """What ``folder_actions._failed`` asks of a folder, noting the issues it raises."""

    def __init__(self) -> None:
        self.holds: dict[str, float] = {}
        self.issues: list[tuple[str, str]] = []
        self.hooks = SimpleNamespace(settings=SimpleNamespace(stable_seconds=1.0))

    def raise_issue(self, path: str, kind: str, *_args: Any, **_kwargs: Any) -> None:
        self.issues.append((path, kind))

    def retry_later(self, path: str, kind: str, *_args: Any, **_kwargs: Any) -> None:
        self.issues.append((path, kind))


async def test_a_file_gone_before_its_upload_read_it_is_held_not_an_issue(
    tmp_path: Path,
) -> None:
    gone = tmp_path / "big-0.bin"  # renamed away just before the upload opened it
    # No server is reached: the SDK stats the file before any request.
    async with DroplineClient("http://127.0.0.1:9", ApiKeyCredentials("unused")) as client:
        with pytest.raises(DroplineError) as raised:
            await upload_file(client, gone, "/big-0.bin")
    folder = RecordingFolder()
    folder_actions._failed(cast(FolderState, folder), "big-0.bin", raised.value)
    assert folder.issues == []
    assert "big-0.bin" in folder.holds
