"""The undo part of the docs' screenshots: version history, deleted files, a conflict's choices.

Called by tools/screenshots.py once its own pictures are taken, with the same
server, agent and tray: it makes a few versions of one file (from this computer
and from the API), deletes some files, stages a real conflict, and shoots the
windows that bring them back.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from tools.screenshots import framed, log, put_on_server, save, settle, wait, write_file

VERSIONED = "Budget 2026 draft.xlsx"  # written three times here, once through the API
DELETED = ("Invoice 2025-0143.pdf", "Minutes 2025-11-20.docx", "Logo refresh")
CONFLICTED = "Staff rota November.docx"
INTEGRATION = "northwind-erp/4.2"  # the business system that sends one version


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _current_sha(client: Any, path: Path) -> str | None:
    try:
        revisions = client.versions(str(path))["revisions"]
    except Exception:  # not on the server yet
        return None
    return next((r["sha256"] for r in revisions if r["current"]), None)


def make_versions(client: Any, url: str, key: str, reports: Path) -> Path:
    """Four versions of one file: three saved here, one arriving from another program."""
    target = reports / VERSIONED

    def saved_here(kib: int) -> None:
        write_file(target, kib)
        sha = _sha(target)
        wait(lambda: _current_sha(client, target) == sha, 120, "a new version")

    def sent_through_the_api(kib: int) -> None:
        current = client.versions(str(target))["revisions"][0]["rev"]
        data = os.urandom(kib * 1024)
        put_on_server(url, key, f"/Reports/{VERSIONED}", data, current, INTEGRATION)
        sha = hashlib.sha256(data).hexdigest()
        wait(lambda: _sha(target) == sha, 120, "the version sent through the API")

    saved_here(660)
    saved_here(712)
    sent_through_the_api(690)
    saved_here(705)
    return target


def delete_some(client: Any, reports: Path) -> None:
    import shutil

    for name in DELETED:
        path = reports / name
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
    wait(lambda: len(client.trash()) >= len(DELETED), 120, "the deleted files on the server")


def make_conflict(client: Any, url: str, key: str, reports: Path) -> None:
    """Edited here and elsewhere while this computer was paused: a real conflict."""
    target = reports / CONFLICTED
    client.pause()
    current = client.versions(str(target))["revisions"][0]["rev"]
    write_file(target, 97)
    put_on_server(url, key, f"/Reports/{CONFLICTED}", os.urandom(99 * 1024), if_rev=current)
    client.resume()


def shoot_undo(tray: Any, client: Any, url: str, key: str, reports: Path, out: Path) -> None:
    from PySide6.QtCore import QItemSelectionModel

    client.set_setting("bandwidth.upload_kbps", 0)  # the big upload may finish now
    log("making versions, deletions and a conflict")
    versioned = make_versions(client, url, key, reports)
    delete_some(client, reports)

    tray.undo.open_versions(str(versioned))
    versions = tray.undo.versions_window()
    versions.resize(760, 390)
    wait(lambda: versions.model.rowCount() >= 4, 60, "the versions")
    versions.table.selectRow(2)
    settle(1.0)
    save(framed(versions.grab(), versions.windowTitle()), "versions", out)
    versions.restore_button.click()  # the version of 712 KB, after the confirmation
    wait(lambda: versions.confirm_box is not None, 10, "the confirmation")
    versions.confirm_box.defaultButton().click()
    wait(lambda: versions.banner.text().startswith("Restored"), 60, "the restore")
    wait(lambda: versions.model.rowCount() >= 6, 60, "the restored version listed")
    settle(1.0)
    save(framed(versions.grab(), versions.windowTitle()), "versions-restored", out)

    tray.undo.open_trash()
    trash = tray.undo.trash_window()
    trash.resize(900, 400)
    wait(lambda: trash.model.rowCount() >= len(DELETED), 60, "the deleted files")
    trash.table.selectRow(0)
    trash.table.selectionModel().select(
        trash.model.index(1, 0),
        QItemSelectionModel.SelectionFlag.Select | QItemSelectionModel.SelectionFlag.Rows,
    )
    settle(1.0)
    save(framed(trash.grab(), trash.windowTitle()), "deleted-files", out)

    make_conflict(client, url, key, reports)
    wait(
        lambda: any(i["kind"] == "conflict" for i in tray.issues_model.issues()),
        120,
        "the conflict",
    )
    issues = tray.issues_window()
    tray.open_issues()
    row = next(n for n, i in enumerate(tray.issues_model.issues()) if i["kind"] == "conflict")
    issues.table.selectRow(row)
    issues.resize(980, 460)
    settle(1.0)
    save(framed(issues.grab(), issues.windowTitle()), "issues-conflict", out)
    for window in (versions, trash):
        window.close()
