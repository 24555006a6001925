"""``/readyz``: 200 while the database and the blob store answer, 503 naming the check
that failed when one does not (local blob folder gone, object store down, database
unreachable), and back to 200 when it returns."""

from __future__ import annotations

import threading
from pathlib import Path

import httpx
import pytest

from dropline.server.http import readiness
from dropline.server.settings import Settings
from dropline.server.storage.db import Database
from tests.support.live import LiveServer, running_server
from tests.support.s3 import MotoServer

# Nothing listens on port 1.
NOWHERE = "postgresql+psycopg://dropline@127.0.0.1:1/nowhere"


def ready(url: str) -> httpx.Response:
    return httpx.get(url + "/readyz", timeout=30)


def test_readiness_fails_while_the_blob_folder_is_gone(live_server: LiveServer) -> None:
    answer = ready(live_server.url)
    assert (answer.status_code, answer.json()) == (
        200,
        {"status": "ok", "checks": {"database": "ok", "storage": "ok"}},
    )
    blobs = live_server.settings.blob_dir
    away = blobs.with_name("blobs-away")
    blobs.rename(away)
    try:
        answer = ready(live_server.url)
        assert (answer.status_code, answer.json()) == (
            503,
            {"status": "unavailable", "checks": {"database": "ok", "storage": "missing"}},
        )
    finally:
        away.rename(blobs)
    assert ready(live_server.url).status_code == 200


def test_readiness_follows_the_object_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    moto = MotoServer().start()
    try:
        for name, value in moto.env(moto.new_bucket(), home=tmp_path).items():
            monkeypatch.setenv(name, value)
        with running_server(Settings(data_dir=tmp_path / "data", port=0)) as live:
            answer = ready(live.url)
            assert (answer.status_code, answer.json()["checks"]) == (
                200,
                {"database": "ok", "storage": "ok"},
            )
            moto.stop()
            answer = ready(live.url)
            assert answer.status_code == 503
            assert answer.json()["status"] == "unavailable"
            checks = answer.json()["checks"]
            assert checks["database"] == "ok"
            assert checks["storage"] in {"unreachable", "error: no answer in 5 s"}
    finally:
        moto.stop()


def test_an_unreachable_database_fails_its_check() -> None:
    db = Database(NOWHERE)
    try:
        assert readiness.database(db) == "error: OperationalError"
    finally:
        db.dispose()


def test_a_check_that_hangs_is_answered_at_its_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(readiness, "DEADLINE_SECONDS", 0.2)
    release = threading.Event()
    try:
        answers = readiness.run_checks(
            {"hangs": lambda: "ok" if release.wait(30) else "late", "quick": lambda: "ok"}
        )
    finally:
        release.set()
    assert answers == {"hangs": "error: no answer in 0.2 s", "quick": "ok"}
