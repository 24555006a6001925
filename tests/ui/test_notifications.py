"""Notification batching: one notice per burst, worded for people, never a storm."""

from __future__ import annotations

from pytestqt.qtbot import QtBot

from dropline.ui.notifications import Level, Notice, NotificationBatcher, Notifier


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_burst_of_uploads_becomes_one_notice() -> None:
    clock = Clock()
    batcher = NotificationBatcher(clock=clock, quiet=2, max_wait=10, min_gap=10)
    for n in range(12):
        batcher.transfer("/home/ann/Reports", f"r{n}.pdf", "up", "ok")
        clock.now += 0.1
    assert batcher.flush() is None  # still coming in
    clock.now += 2
    notice = batcher.flush()
    assert notice is not None
    assert notice.title == "12 files uploaded to Reports"
    assert notice.level is Level.INFO
    assert batcher.flush() is None


def test_single_file_is_named() -> None:
    clock = Clock()
    batcher = NotificationBatcher(clock=clock, quiet=1)
    batcher.transfer("/home/ann/Inbox", "/sub/q3.pdf", "down", "ok")
    clock.now += 1
    notice = batcher.flush()
    assert notice is not None and notice.title == "q3.pdf downloaded to Inbox"


def test_steady_stream_still_reports_after_max_wait_but_not_more_often_than_min_gap() -> None:
    clock = Clock()
    batcher = NotificationBatcher(clock=clock, quiet=2, max_wait=5, min_gap=30)
    shown = []
    for _ in range(600):  # one upload a tenth of a second for a minute
        batcher.transfer("/d/Reports", "a.txt", "up", "ok")
        clock.now += 0.1
        notice = batcher.flush()
        if notice is not None:
            shown.append((clock.now, notice))
    times = [t for t, _ in shown]
    assert len(shown) == 2
    assert times[0] - 1000 < 6
    assert times[1] - times[0] >= 30


def test_failures_lead_and_raise_the_level() -> None:
    clock = Clock()
    batcher = NotificationBatcher(clock=clock, quiet=1)
    batcher.transfer("/d/Reports", "a.txt", "up", "ok")
    batcher.transfer("/d/Reports", "bad:name.txt", "up", "failed", "the name contains ':'")
    clock.now += 1
    notice = batcher.flush()
    assert notice is not None
    assert notice.level is Level.ERROR
    assert notice.title == "bad:name.txt could not be uploaded: the name contains ':'"
    assert "a.txt uploaded to Reports" in notice.body
    assert notice.body.endswith("Open Issues to see what to do.")


def test_conflicts_say_both_versions_were_kept() -> None:
    clock = Clock()
    batcher = NotificationBatcher(clock=clock, quiet=1)
    batcher.conflict("/d/Plans", "plan.docx")
    clock.now += 1
    notice = batcher.flush()
    assert notice is not None and notice.level is Level.WARNING
    assert notice.title == "plan.docx in Plans was changed in two places; both versions were kept"


def test_many_groups_are_summarised() -> None:
    clock = Clock()
    batcher = NotificationBatcher(clock=clock, quiet=1)
    for n in range(8):
        batcher.transfer(f"/d/F{n}", "x", "up", "ok")
    batcher.error("The server refused the sign-in.")
    batcher.error("The server refused the sign-in.")  # said once
    clock.now += 1
    notice = batcher.flush()
    assert notice is not None
    assert notice.title == "The server refused the sign-in."
    lines = notice.body.splitlines()
    assert len(lines) == NotificationBatcher.MAX_LINES
    assert lines[-1] == "and 6 more"


def test_skipped_files_are_not_announced() -> None:
    clock = Clock()
    batcher = NotificationBatcher(clock=clock, quiet=1)
    batcher.transfer("/d/R", "a", "up", "skipped")
    assert batcher.due() is None


def test_notifier_emits_once_per_batch(qtbot: QtBot) -> None:
    notifier = Notifier(NotificationBatcher(quiet=0.05, max_wait=1, min_gap=0))
    received: list[Notice] = []
    notifier.notice.connect(received.append)
    for n in range(5):
        notifier.transfer("/d/Reports", f"{n}.txt", "up", "ok")
    qtbot.waitUntil(lambda: len(received) == 1, timeout=3000)
    qtbot.wait(200)
    assert len(received) == 1
    assert received[0].title == "5 files uploaded to Reports"


def test_disabled_notifier_stays_silent(qtbot: QtBot) -> None:
    notifier = Notifier(NotificationBatcher(quiet=0.01, max_wait=1, min_gap=0))
    notifier.enabled = False
    received: list[Notice] = []
    notifier.notice.connect(received.append)
    notifier.transfer("/d/Reports", "a.txt", "up", "ok")
    qtbot.wait(100)
    assert received == []


def test_an_issue_is_announced_in_its_own_words() -> None:
    clock = Clock()
    batcher = NotificationBatcher(clock=clock, quiet=1)
    batcher.transfer("/d/R", "/a\\b.txt", "", "failed", "This name can't be used on the server.")
    clock.now += 1
    notice = batcher.flush()
    assert notice is not None
    assert notice.title == "a\\b.txt: This name can't be used on the server."
