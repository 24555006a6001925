"""The download's disk writer: batches land in order after what the file held, the digest
covers exactly what was written, and write-back to the disk is started as batches land."""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

from dropline.sdk.filewrite import IOV_MAX, HashingWriter, atomic_replace, start_writeback


def test_batches_are_appended_after_the_kept_prefix_and_hashed(tmp_path: Path) -> None:
    partial = tmp_path / "f.part"
    prefix = os.urandom(1000)
    partial.write_bytes(prefix)
    # More pieces than one writev takes, of uneven sizes, as a socket delivers them.
    pieces = [os.urandom(1 + (i * 7919) % 70_000) for i in range(IOV_MAX + 37)]
    digest = hashlib.sha256(prefix)
    with partial.open("ab", buffering=0) as fh:
        writer = HashingWriter(fh.fileno(), len(prefix), digest)
        writer.write(pieces[:300])
        writer.write(pieces[300:])
        writer.sync()
        assert writer.offset == len(prefix) + sum(len(p) for p in pieces)
    whole = prefix + b"".join(pieces)
    assert partial.read_bytes() == whole
    assert digest.hexdigest() == hashlib.sha256(whole).hexdigest()

    dest = tmp_path / "f.bin"
    atomic_replace(partial, dest)
    assert dest.read_bytes() == whole
    assert not partial.exists()


def test_write_back_is_started_on_linux(tmp_path: Path) -> None:
    if not sys.platform.startswith("linux"):
        assert start_writeback is None
        return
    assert start_writeback is not None
    path = tmp_path / "f"
    with path.open("wb", buffering=0) as fh:
        fh.write(os.urandom(1 << 20))
        assert start_writeback(fh.fileno(), 0, 1 << 20) == 0
        assert start_writeback(-1, 0, 1) == -1  # a bad descriptor: refused, not a crash
