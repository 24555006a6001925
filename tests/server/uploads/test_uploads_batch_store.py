"""How a batch's files reach the blob store: fsynced and stored in parallel slices, each
file exactly once with its bytes and checksums, and a failure surfacing only after every
slice has finished."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import pytest

from dropline.server.storage.blobs import LocalBlobStore, new_blob_id
from dropline.server.uploads import batch


def staged_files(tmp_path: Path, count: int) -> list[tuple[str, Path, bytes]]:
    staging = tmp_path / "staging"
    staging.mkdir()
    shard = new_blob_id()[:2]
    out = []
    for i in range(count):
        data = i.to_bytes(4, "big") + os.urandom(60)
        path = staging / f"{i}.batch"
        path.write_bytes(data)
        out.append((shard + new_blob_id()[2:], path, data))
    return out


def test_a_big_batch_is_stored_in_slices_each_file_once(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "blobs")
    calls: list[int] = []
    put_many = store.put_many

    def counting(items: Sequence[tuple[str, Path]]) -> None:
        calls.append(len(items))
        put_many(items)

    store.put_many = counting  # type: ignore[method-assign]
    files = staged_files(tmp_path, 100)
    batch._store(store, [(blob_id, path) for blob_id, path, _ in files])
    assert sum(calls) == 100 and len(calls) > 1 and max(calls) <= 7  # 15 slices of 7 or less
    for blob_id, path, data in files:
        assert not path.exists()  # moved into the store
        with store.open(blob_id) as fh:  # a checked read: the sums were written too
            assert fh.read() == data


def test_a_small_batch_is_stored_in_one_call(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "blobs")
    calls: list[int] = []
    put_many = store.put_many

    def counting(items: Sequence[tuple[str, Path]]) -> None:
        calls.append(len(items))
        put_many(items)

    store.put_many = counting  # type: ignore[method-assign]
    files = staged_files(tmp_path, batch.SYNC_SLICE_MIN)
    batch._store(store, [(blob_id, path) for blob_id, path, _ in files])
    assert calls == [batch.SYNC_SLICE_MIN]


def test_a_failing_slice_raises_after_the_others_finished(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "blobs")
    files = staged_files(tmp_path, 40)
    files[5][1].unlink()  # one staged file vanished: its slice fails
    with pytest.raises(FileNotFoundError):
        batch._store(store, [(blob_id, path) for blob_id, path, _ in files])
    # The slices without it were all stored before the error came back, so the caller's
    # clean-up (deleting every blob id of the batch) finds nothing still being written.
    stored = [blob_id for blob_id, path, _ in files[10:] if not path.exists()]
    assert len(stored) == 30
