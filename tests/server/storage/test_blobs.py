from __future__ import annotations

import os
from pathlib import Path

import pytest

from dropline.server.storage.blobs import LocalBlobStore, new_blob_id


def staged(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "staged.part"
    path.write_bytes(data)
    return path


def test_put_then_read_from_an_offset(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "blobs")
    blob_id = new_blob_id()
    data = os.urandom(10_000)
    source = staged(tmp_path, data)
    store.put(blob_id, source)
    assert not source.exists()
    assert store.size(blob_id) == len(data)
    with store.open(blob_id, 1234) as handle:
        assert handle.read() == data[1234:]


def test_blob_lives_under_its_id_not_a_user_path(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "blobs")
    blob_id = new_blob_id()
    store.put(blob_id, staged(tmp_path, b"abc"))
    assert (tmp_path / "blobs" / blob_id[:2] / blob_id).read_bytes() == b"abc"


@pytest.mark.parametrize("bad", ["../../etc/passwd", "ABCDEF", "", "0" * 31, "g" * 32])
def test_ids_that_are_not_blob_ids_are_refused(tmp_path: Path, bad: str) -> None:
    store = LocalBlobStore(tmp_path / "blobs")
    with pytest.raises(ValueError):
        store.open(bad)
    with pytest.raises(ValueError):
        store.put(bad, staged(tmp_path, b"x"))


def test_delete_removes_and_tolerates_missing(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "blobs")
    blob_id = new_blob_id()
    store.put(blob_id, staged(tmp_path, b"abc"))
    store.delete(blob_id)
    with pytest.raises(FileNotFoundError):
        store.open(blob_id)
    store.delete(blob_id)
