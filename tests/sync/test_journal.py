"""The journal: migrations, durable queue, base, transfers, issues, history."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import sqlite_utils

from dropline.sync import journal_migrations
from dropline.sync.journal import Journal, TransferRow
from dropline.sync.records import Base, Remote
from dropline.sync.types import Direction, HistoryQuery, Result


def b(rid: str = "r", d: bool = False) -> Base:
    return Base(d, 1, 2, 3, None if d else "ab", rid, "rev1")


def test_migrations_apply_once_in_order(tmp_path: Path) -> None:
    Journal(tmp_path).close()
    conn = sqlite3.connect(tmp_path / "journal.sqlite3", isolation_level=None)
    names = [r[0] for r in conn.execute("SELECT name FROM journal_migrations ORDER BY name")]
    assert names == [name for name, _ in journal_migrations.MIGRATIONS]
    assert journal_migrations.migrate(sqlite_utils.Database(conn)) == []
    mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_failing_migration_leaves_no_trace(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "j.db", isolation_level=None)
    db = sqlite_utils.Database(conn)

    def good(db: sqlite_utils.Database) -> None:
        db["a"].create({"x": int})

    def bad(db: sqlite_utils.Database) -> None:
        db["b"].create({"x": int})
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        journal_migrations.migrate(db, [("1_good", good), ("2_bad", bad)])
    assert db["a"].exists() and not db["b"].exists()
    applied = [r[0] for r in conn.execute("SELECT name FROM journal_migrations")]
    assert applied == ["1_good"]


def test_queue_survives_a_reopen_and_merges_sources(tmp_path: Path) -> None:
    j = Journal(tmp_path)
    fid = j.folder_id("/home/a/Drop", "/")
    j.enqueue_local(fid, ["x.txt", "y.txt"])
    remote = Remote("id9", False, 5, "cd", "rev9", 1.5)
    j.enqueue_remote(fid, [("x.txt", remote), ("gone.txt", None)])
    j.close()
    j = Journal(tmp_path)
    items = {i.path: i for i in j.pending(fid)}
    assert set(items) == {"x.txt", "y.txt", "gone.txt"}
    assert items["x.txt"].local and items["x.txt"].remote_known and items["x.txt"].remote == remote
    assert items["gone.txt"].remote_known and items["gone.txt"].remote is None
    assert not items["y.txt"].remote_known
    assert j.pending_count(fid) == 3
    j.dequeue(fid, items["y.txt"])
    assert j.pending_count(fid) == 2


def test_a_round_takes_the_work_behind_what_is_running(tmp_path: Path) -> None:
    j = Journal(tmp_path)
    fid = j.folder_id("/f", "/")
    paths = [f"f{i:02d}" for i in range(10)]
    j.enqueue_local(fid, paths)
    running = set(paths[:4])  # in flight, still queued until they are done
    j.enqueue_remote(fid, [("f01", None), ("f05", None)])  # a second row of each
    assert [i.path for i in j.pending(fid, 3, running)] == ["f04", "f05", "f06"]
    rest = j.pending(fid, 20, running)
    assert [i.path for i in rest] == paths[4:]
    assert rest[1].local and rest[1].remote_known  # both rows of f05, merged


def test_transaction_rolls_back_on_error(tmp_path: Path) -> None:
    j = Journal(tmp_path)
    fid = j.folder_id("/f", "/")
    with pytest.raises(ValueError), j.transaction():
        j.put_base(fid, "a", b())
        with j.transaction():
            j.put_base(fid, "b", b())
        raise ValueError
    assert j.get_base(fid, "a") is None and j.get_base(fid, "b") is None


def test_descendants_and_subtree_moves(tmp_path: Path) -> None:
    j = Journal(tmp_path)
    fid = j.folder_id("/f", "/")
    for p in ["a", "a/x", "a/y/z", "a b", "ab", "b"]:
        j.put_base(fid, p, b(p, d=p in ("a", "a/y")))
    assert set(j.descendants(fid, "a")) == {"a/x", "a/y/z"}
    j.move_base(fid, "a", "c/a", b("a", d=True))
    assert set(j.descendants(fid, "c/a")) == {"c/a/x", "c/a/y/z"}
    assert j.get_base(fid, "a/x") is None
    reader = j.reader(fid)
    assert reader.children("c/a") == {"x": b("a/x")}
    reader.close()
    assert j.base_by_remote_id(fid, "a/y/z") == ("c/a/y/z", b("a/y/z"))
    assert j.count_files(fid) == 5


def test_folders_are_kept_apart(tmp_path: Path) -> None:
    j = Journal(tmp_path)
    one, two = j.folder_id("/one", "/"), j.folder_id("/two", "/x")
    j.put_base(one, "a", b())
    assert j.get_base(two, "a") is None
    assert j.folder_id("/one", "/") == one
    # Re-pointed at another remote path: the old base no longer applies.
    again = j.folder_id("/one", "/elsewhere")
    assert j.get_base(again, "a") is None


def test_transfer_state_round_trips(tmp_path: Path) -> None:
    j = Journal(tmp_path)
    fid = j.folder_id("/f", "/")
    row = TransferRow(
        "big.bin", Direction.UP, "/api/v1/uploads/u1", None, "ff", 10, 20, 30, None, None
    )
    j.put_transfer(fid, row)
    assert j.transfer(fid, "big.bin", Direction.UP) == row
    assert j.transfer(fid, "big.bin", Direction.DOWN) is None
    j.drop_transfer(fid, "big.bin", Direction.UP)
    assert j.transfers(fid) == []


def test_issues_are_one_per_path_and_kind_and_count_attempts(tmp_path: Path) -> None:
    j = Journal(tmp_path)
    fid = j.folder_id("/f", "/")
    first, new = j.raise_issue(fid, "a", "unreadable", "m", "h", retry_at=5.0)
    again, new2 = j.raise_issue(fid, "a", "unreadable", "m2", "h", retry_at=9.0)
    assert new and not new2 and first.id == again.id
    assert again.message == "m2" and j.attempts(fid, "a", "unreadable") == 2
    assert j.due_retries(fid, 10.0) == ["a"] and j.next_retry(fid) == 9.0
    assert j.issues()[0].folder == "/f"
    assert j.clear_issues(fid, "a") == [first.id]
    assert j.issues() == []


def test_history_filters_and_pages(tmp_path: Path) -> None:
    j = Journal(tmp_path)
    for i in range(5):
        j.add_history("/f", f"dir/Report_{i}.pdf", Direction.UP, i, 0.1, Result.OK)
    j.add_history("/g", "x%y.txt", Direction.DOWN, 1, 0.1, Result.FAILED, "boom")
    rows = j.history(HistoryQuery(limit=2))
    assert [r.path for r in rows] == ["x%y.txt", "dir/Report_4.pdf"]
    older = j.history(HistoryQuery(limit=10, before_id=rows[-1].id))
    assert [r.path for r in older] == [f"dir/Report_{i}.pdf" for i in (3, 2, 1, 0)]
    assert [r.path for r in j.history(HistoryQuery(search="REPORT_2"))] == ["dir/Report_2.pdf"]
    assert [r.path for r in j.history(HistoryQuery(search="%"))] == ["x%y.txt"]
    assert len(j.history(HistoryQuery(direction=Direction.DOWN, result=Result.FAILED))) == 1
    assert j.history(HistoryQuery(folder="/nope")) == []
