"""The scanner against a real directory tree and a journal base."""

from __future__ import annotations

import fcntl
import json
import os
import tempfile
from pathlib import Path

import pytest

from dropline.sync import fs
from dropline.sync.ignore import IgnoreRules
from dropline.sync.journal import Journal
from dropline.sync.records import Base
from dropline.sync.scanner import FileBusyError, ScanResult, hash_file, walk


def record(j: Journal, fid: int, root: Path, rel: str, sha: str | None = "x") -> None:
    st = fs.stat(root, rel)
    assert st is not None
    j.put_base(fid, rel, Base(st.is_dir, st.size, st.mtime_ns, st.inode, sha, "id-" + rel, "r"))


@pytest.fixture
def tree(tmp_path: Path) -> tuple[Path, Journal, int]:
    root = tmp_path / "folder"
    (root / "docs" / "deep").mkdir(parents=True)
    (root / "a.txt").write_text("a")
    (root / "docs" / "b.txt").write_text("b")
    (root / "docs" / "deep" / "c.txt").write_text("c")
    j = Journal(tmp_path / "home")
    fid = j.folder_id(str(root), "/")
    for rel in ["a.txt", "docs", "docs/b.txt", "docs/deep", "docs/deep/c.txt"]:
        record(j, fid, root, rel)
    return root, j, fid


def paths(results: list[ScanResult]) -> dict[str, str]:
    return {
        r.path: "error"
        if r.error
        else "gone"
        if r.local is None
        else "new"
        if r.base is None
        else "changed"
        for r in results
    }


def test_unchanged_tree_yields_nothing(tree: tuple[Path, Journal, int]) -> None:
    root, j, fid = tree
    seen: list[int] = []
    assert list(walk(root, j.base_reader(fid), IgnoreRules(), counter=seen.append)) == []
    assert sum(seen) == 5


def test_new_changed_and_deleted_entries_are_reported(tree: tuple[Path, Journal, int]) -> None:
    root, j, fid = tree
    (root / "a.txt").write_text("longer now")
    (root / "new.txt").write_text("n")
    (root / "docs" / "b.txt").unlink()
    (root / "~$lock.docx").write_text("ignored")
    got = paths(list(walk(root, j.base_reader(fid), IgnoreRules())))
    assert got == {"a.txt": "changed", "new.txt": "new", "docs/b.txt": "gone"}


def test_deleted_folder_reports_everything_below_it(tree: tuple[Path, Journal, int]) -> None:
    root, j, fid = tree
    for p in ["docs/deep/c.txt", "docs/b.txt"]:
        (root / p).unlink()
    (root / "docs" / "deep").rmdir()
    (root / "docs").rmdir()
    got = paths(list(walk(root, j.base_reader(fid), IgnoreRules())))
    assert got == {p: "gone" for p in ["docs", "docs/b.txt", "docs/deep", "docs/deep/c.txt"]}


def test_hash_file_reads_the_content_and_counts_bytes(tree: tuple[Path, Journal, int]) -> None:
    root, j, fid = tree
    (root / "a.txt").write_bytes(b"hello")
    [result] = list(walk(root, j.base_reader(fid), IgnoreRules()))
    assert result.needs_hash and result.local is not None
    counted: list[int] = []
    hashed = hash_file(root, "a.txt", result.local, counted.append)
    assert hashed.sha256 == "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
    assert sum(counted) == 5


def test_locked_or_changing_file_is_busy(tree: tuple[Path, Journal, int]) -> None:
    root, j, fid = tree
    (root / "a.txt").write_bytes(b"hello")
    [result] = list(walk(root, j.base_reader(fid), IgnoreRules()))
    assert result.local is not None
    with (root / "a.txt").open("rb") as holder:
        fcntl.flock(holder.fileno(), fcntl.LOCK_EX)
        with pytest.raises(FileBusyError):
            hash_file(root, "a.txt", result.local)
    (root / "a.txt").write_bytes(b"hello, and more")
    with pytest.raises(FileBusyError):
        hash_file(root, "a.txt", result.local)


def _walk_unprivileged(root: Path, index: Journal, fid: int) -> list[tuple[str, bool, bool]]:
    """Root reads everything, so the walk runs in a forked child that dropped to nobody
    (everything it needs is already imported and the journal connection open)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.close(read_end)
            if os.geteuid() == 0:
                os.setgid(65534)
                os.setuid(65534)
            found = [
                (r.path, r.error is not None, r.local is None)
                for r in walk(root, index.base_reader(fid), IgnoreRules())
            ]
            os.write(write_end, json.dumps(found).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as fh:
        data = fh.read()
    os.waitpid(pid, 0)
    return [tuple(x) for x in json.loads(data)]  # type: ignore[misc]


def test_unreadable_folder_is_an_error_result_and_the_walk_goes_on() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        os.chmod(tmp, 0o755)  # the unprivileged child must reach the tree
        root = Path(tmp) / "folder"
        (root / "docs" / "deep").mkdir(parents=True)
        (root / "docs" / "deep" / "c.txt").write_text("c")
        j = Journal(Path(tmp) / "home")
        fid = j.folder_id(str(root), "/")
        for rel in ["docs", "docs/deep", "docs/deep/c.txt"]:
            record(j, fid, root, rel)
        (root / "docs" / "new.txt").write_text("n")
        os.chmod(root / "docs" / "deep", 0o000)
        try:
            results = {p: (err, gone) for p, err, gone in _walk_unprivileged(root, j, fid)}
        finally:
            os.chmod(root / "docs" / "deep", 0o755)
            j.close()
    assert results["docs/deep"] == (True, True)
    assert "docs/deep/c.txt" not in results  # not mistaken for deleted
    assert results["docs/new.txt"] == (False, False)  # the walk went on


class _CountingIndex:
    """The journal's reader, counting the full-base lookups a walk makes."""

    def __init__(self, j: Journal, fid: int) -> None:
        self.reader = j.reader(fid)
        self.gets: list[str] = []

    def signatures(self, parent: str) -> dict[str, tuple[int, int, int, int]]:
        return self.reader.signatures(parent)

    def get(self, path: str) -> Base | None:
        self.gets.append(path)
        return self.reader.get(path)

    def descendants(self, path: str) -> dict[str, Base]:
        return self.reader.descendants(path)


def test_unchanged_files_are_passed_over_on_their_signature_alone(
    tree: tuple[Path, Journal, int],
) -> None:
    root, j, fid = tree
    (root / "docs" / "b.txt").write_text("bigger now")
    (root / "a.txt").unlink()
    index = _CountingIndex(j, fid)
    found = paths(list(walk(root, index, IgnoreRules())))
    assert found == {"docs/b.txt": "changed", "a.txt": "gone"}
    # Full bases are read for what differs (and the folders walked into), never for
    # the unchanged file docs/deep/c.txt.
    assert "docs/deep/c.txt" not in index.gets
    assert {"docs/b.txt", "a.txt"} <= set(index.gets)
    index.reader.close()


def test_an_unchanged_file_that_a_new_rule_ignores_is_neither_new_nor_gone(
    tree: tuple[Path, Journal, int],
) -> None:
    root, j, fid = tree
    reader = j.reader(fid)
    assert list(walk(root, reader, IgnoreRules(["*.txt"]))) == []
    reader.close()
