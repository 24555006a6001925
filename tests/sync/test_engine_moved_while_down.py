"""A folder renamed here, with files in it renamed, whose move reached the server but not
the journal (the agent was killed between the two): after a restart the server must end
with the new names only, never the old ones beside them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dropline.sdk.client import DroplineClient
from dropline.sync.journal import Journal
from dropline.sync.planner import plan
from dropline.sync.records import Base, Local, PathState, RecordMove, Remote
from dropline.sync.transfer import remote_of
from tests.sync.engine_helpers import (
    StartEngine,
    eventually,
    local_tree,
    remote_entry,
    remote_tree,
    settled,
    sha,
)

pytestmark = pytest.mark.anyio


async def test_folder_moved_on_both_sides_before_the_journal_knew_keeps_no_old_names(
    tmp_path: Path, root: Path, sdk: DroplineClient, start_engine: StartEngine
) -> None:
    data = {name: os.urandom(5_000 + i) for i, name in enumerate(("a", "b", "c", "d"))}
    (root / "Reports").mkdir()
    (root / "Archive").mkdir()
    for name, content in data.items():
        (root / "Reports" / name).write_bytes(content)
    async with start_engine() as engine:
        await settled(engine)
        folder = await remote_entry(sdk, "/Reports")
        assert folder is not None
    # What the killed agent did: the user's renames here, its move of the folder on the
    # server; its journal still has the old names.
    os.rename(root / "Reports" / "a", root / "Reports" / "renamed-a")
    os.rename(root / "Reports" / "b", root / "Reports" / "renamed-b")
    os.rename(root / "Reports" / "c", root / "Archive" / "renamed-c")
    os.rename(root / "Reports", root / "Reports-2026")
    moved = await sdk.move(folder.id, "/Reports-2026")
    # The change feed's page came first: its news (the folder gone from the old name, at
    # the new one) is queued before the folder's scan finds the same move here.
    journal = Journal(tmp_path / "home")
    try:
        fid = journal.folder_id(str(root), "/")
        journal.enqueue_remote(fid, [("Reports", None), ("Reports-2026", remote_of(moved))])
    finally:
        journal.close()
    async with start_engine() as engine:
        await settled(engine)

        async def only_new_names() -> bool:
            return await remote_tree(sdk) == {
                "/Archive": None,
                "/Archive/renamed-c": sha(data["c"]),
                "/Reports-2026": None,
                "/Reports-2026/renamed-a": sha(data["a"]),
                "/Reports-2026/renamed-b": sha(data["b"]),
                "/Reports-2026/d": sha(data["d"]),
            }

        await eventually(only_new_names, 20)
        await settled(engine)
    assert local_tree(root) == await remote_tree(sdk)


def test_planner_records_a_move_found_on_both_sides_and_defers_what_is_under_it() -> None:
    old = Base(True, 0, 1, 10, None, "id-1", "rev-1")
    child = Base(False, 3, 1, 11, "h" * 64, "id-2", "rev-1")
    moved = Remote("id-1", True, 0, None, "rev-2")
    states = [
        PathState("Reports", old, None, None),
        PathState("Reports/a", child, None, None),
        PathState("Reports-2026", None, Local(True, 0, 5, 10), moved),
        PathState("Reports-2026/renamed-a", None, Local(False, 3, 1, 11, "h" * 64), None),
    ]
    result = plan(states)
    assert result.actions == [
        RecordMove("Reports", "Reports-2026", Base(True, 0, 5, 10, None, "id-1", "rev-2"))
    ]
    assert sorted(result.deferred) == ["Reports-2026/renamed-a", "Reports/a"]


async def test_folder_renamed_with_files_renamed_inside_while_stopped_keeps_no_old_names(
    root: Path, sdk: DroplineClient, start_engine: StartEngine
) -> None:
    data = {name: os.urandom(5_000 + i) for i, name in enumerate(("a", "b", "c"))}
    (root / "Reports").mkdir()
    for name, content in data.items():
        (root / "Reports" / name).write_bytes(content)
    async with start_engine() as engine:
        await settled(engine)
    # While the agent is stopped: a file renamed inside the folder, then the folder.
    # After the folder's move only the journal knows the old names under the new one.
    os.rename(root / "Reports" / "a", root / "Reports" / "renamed-a")
    os.rename(root / "Reports", root / "Reports-2026")
    async with start_engine() as engine:

        async def only_new_names() -> bool:
            return await remote_tree(sdk) == {
                "/Reports-2026": None,
                "/Reports-2026/renamed-a": sha(data["a"]),
                "/Reports-2026/b": sha(data["b"]),
                "/Reports-2026/c": sha(data["c"]),
            }

        await eventually(only_new_names, 20)
        await settled(engine)
    assert local_tree(root) == await remote_tree(sdk)
