"""transfer.upload_many: a batch's files each get their own result, in order."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dropline.sdk.client import DroplineClient
from dropline.sync.journal import Journal
from dropline.sync.records import Base, Local, Remote
from dropline.sync.scanner import hash_file
from dropline.sync.transfer import (
    BatchFile,
    ChangedDuringUpload,
    Counters,
    Shared,
    Slots,
    TokenBucket,
    upload_many,
)
from tests.sync.engine_helpers import remote_entry, sha

pytestmark = pytest.mark.anyio


def _local(root: Path, rel: str) -> Local:
    st = os.stat(root / rel)
    return hash_file(root, rel, Local(False, st.st_size, st.st_mtime_ns, st.st_ino), None)


async def test_files_changed_or_gone_since_the_plan_fail_alone_and_the_rest_land(
    tmp_path: Path, root: Path, sdk: DroplineClient
) -> None:
    for name in ("a.txt", "changed.txt", "gone.txt", "b.txt"):
        (root / name).write_bytes(name.encode())
    planned = {name: _local(root, name) for name in ("a.txt", "changed.txt", "gone.txt", "b.txt")}
    # After the plan: one file is rewritten (another size), one deleted.
    (root / "changed.txt").write_bytes(b"rewritten meanwhile")
    (root / "gone.txt").unlink()
    journal = Journal(tmp_path / "home")
    counters = Counters()
    shared = Shared(
        journal, Slots(4), Slots(12), TokenBucket(None), TokenBucket(None), counters, 1 << 24
    )
    files = [BatchFile(n, f"/in/{n}", planned[n], "none") for n in planned]
    try:
        results = await upload_many(shared, sdk, root, files)
        assert isinstance(results[1], ChangedDuringUpload)
        assert isinstance(results[2], FileNotFoundError)
        for i, name in ((0, "a.txt"), (3, "b.txt")):
            result = results[i]
            assert isinstance(result, tuple)
            base, remote = result
            assert isinstance(base, Base) and isinstance(remote, Remote)
            assert base.sha256 == remote.sha256 == sha(name.encode())
            entry = await remote_entry(sdk, f"/in/{name}")
            assert entry is not None and (entry.id, entry.rev) == (remote.id, remote.rev)
        assert await remote_entry(sdk, "/in/changed.txt") is None
        assert await remote_entry(sdk, "/in/gone.txt") is None
        assert (counters.upload_batches, counters.files_uploaded) == (1, 2)
        assert counters.bytes_uploaded == len(b"a.txt") + len(b"b.txt")
        # The same batch again (a repeat after a crash): the if_rev guard refuses
        # each file alone and nothing is published twice.
        again = await upload_many(shared, sdk, root, [files[0], files[3]])
        assert [getattr(r, "status", None) for r in again] == [412, 412]
        assert counters.files_uploaded == 2
    finally:
        journal.close()
