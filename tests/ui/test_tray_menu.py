"""The tray menu for each state: items, wording, what is enabled, steady under progress."""

from __future__ import annotations

from pytestqt.qtbot import QtBot

from dropline.ui.status import Summary
from dropline.ui.tray import FOLDERS_INLINE, MenuState, Tray

IDLE = Summary("idle", "Up to date")


def state(**kw: object) -> MenuState:
    base: dict[str, object] = {
        "summary": IDLE,
        "folders": (("/home/ann/Reports", "idle"), ("/home/ann/Inbox", "idle")),
        "connected": True,
        "signed_in": True,
        "account": "ann@example.com",
    }
    base.update(kw)
    return MenuState(**base)  # type: ignore[arg-type]


def test_menu_lists_every_part_of_the_brief(qtbot: QtBot) -> None:
    tray = Tray()
    tray.apply(state(issues=3))
    texts = [a.text() for a in tray.menu.actions() if not a.isSeparator()]
    assert texts == [
        "Up to date",
        "",  # the detail line, hidden while there is none
        "Open Reports",
        "Open Inbox",
        "&Pause syncing",
        "Pause or resume a &folder",
        "&Sync now",
        "&Transfers…",
        "&History…",
        "&Version history…",
        "Restore &deleted files…",
        "&Issues (3)…",
        "Sign &out (ann@example.com)",
        "S&ettings…",
        "&Quit Dropline",
    ]
    assert not tray.action("status").isEnabled()  # type: ignore[union-attr]
    assert tray.icon.toolTip() == "Dropline: Up to date"


def test_each_action_emits_its_request(qtbot: QtBot) -> None:
    tray = Tray()
    tray.apply(state())
    with qtbot.waitSignal(tray.openFolder) as opened:
        tray.action("open-folder:/home/ann/Inbox").trigger()  # type: ignore[union-attr]
    assert opened.args == ["/home/ann/Inbox"]
    with qtbot.waitSignal(tray.pauseFolder) as paused:
        tray.action("pause-folder:/home/ann/Reports").trigger()  # type: ignore[union-attr]
    assert paused.args == ["/home/ann/Reports"]
    for name, signal in (
        ("pause-all", tray.pauseAll),
        ("sync-now", tray.syncNow),
        ("history", tray.showHistory),
        ("versions", tray.showVersions),
        ("trash", tray.showTrash),
        ("issues", tray.showIssues),
        ("transfers", tray.showTransfers),
        ("settings", tray.showSettings),
        ("sign-out", tray.signOut),
        ("quit", tray.quitRequested),
    ):
        with qtbot.waitSignal(signal, timeout=1000):
            tray.action(name).trigger()  # type: ignore[union-attr]


def test_all_paused_offers_resume_and_a_paused_folder_offers_its_own(qtbot: QtBot) -> None:
    tray = Tray()
    tray.apply(state(folders=(("/d/Reports", "paused"), ("/d/Inbox", "paused"))))
    assert tray.action("resume-all") is not None and tray.action("pause-all") is None
    tray.apply(state(folders=(("/d/Reports", "paused"), ("/d/Inbox", "idle"))))
    assert tray.action("pause-all") is not None
    assert tray.action("resume-folder:/d/Reports") is not None
    assert tray.action("pause-folder:/d/Inbox") is not None


def test_many_folders_go_into_a_submenu(qtbot: QtBot) -> None:
    tray = Tray()
    folders = tuple((f"/d/F{n}", "idle") for n in range(FOLDERS_INLINE + 1))
    tray.apply(state(folders=folders))
    top = [a.objectName() for a in tray.menu.actions()]
    assert not any(name.startswith("open-folder:") for name in top)
    assert tray.action("open-folder:/d/F0").text() == "F0"  # type: ignore[union-attr]


def test_while_connecting_actions_that_need_the_agent_are_disabled(qtbot: QtBot) -> None:
    tray = Tray()
    tray.apply(state(connected=False, signed_in=False))
    for name in ("pause-all", "sync-now", "sign-in", "pause-folder:/home/ann/Reports"):
        assert not tray.action(name).isEnabled(), name  # type: ignore[union-attr]
    for name in ("history", "issues", "settings", "quit", "open-folder:/home/ann/Reports"):
        assert tray.action(name).isEnabled(), name  # type: ignore[union-attr]


def test_policy_that_forbids_sign_out_disables_it(qtbot: QtBot) -> None:
    tray = Tray()
    tray.apply(state(can_sign_out=False))
    sign_out = tray.action("sign-out")
    assert sign_out is not None and not sign_out.isEnabled()
    assert sign_out.toolTip() == "Set by your administrator"


def test_progress_updates_the_status_line_without_rebuilding_the_menu(qtbot: QtBot) -> None:
    tray = Tray()
    tray.apply(state(summary=Summary("syncing", "Uploading 1 file, 9 MB left", "about 1 min left")))
    item = tray.action("status")
    tray.apply(state(summary=Summary("syncing", "Uploading 1 file, 4 MB left", "20 s left")))
    assert tray.action("status") is item
    assert item.text() == "Uploading 1 file, 4 MB left"  # type: ignore[union-attr]
    assert tray.action("status-detail").text() == "20 s left"  # type: ignore[union-attr]
    assert tray.icon_name == "syncing"
    assert tray.icon.toolTip() == "Dropline: Uploading 1 file, 4 MB left\n20 s left"
