"""Structured access logs: one record per request carrying the request id the client got
back in ``X-Request-Id``; share tokens masked; JSON lines on demand."""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest

from dropline.server.http.access_log import ACCESS_LOGGER, JsonFormatter, configure, safe_path
from tests.server.ops_helpers import ops_client, upload
from tests.support.live import LiveServer
from tests.support.receiver import wait_until


def access_records(caplog: pytest.LogCaptureFixture, count: int = 1) -> list[logging.LogRecord]:
    """The access records, once ``count`` have arrived (a record is written just after the
    answer is sent, so the client can be a moment ahead of it)."""

    def found() -> list[logging.LogRecord]:
        records = [r for r in caplog.records if r.name == ACCESS_LOGGER]
        return records if len(records) >= count else []

    records: list[logging.LogRecord] = wait_until(found, timeout=10)
    return records


def test_each_request_is_logged_with_its_request_id(
    ops_server: LiveServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=ACCESS_LOGGER)
    with ops_client(ops_server) as alice:
        entry = upload(alice, "/log/a.txt", b"a")
        caplog.clear()
        r = alice.get(f"/api/v1/files/{entry['id']}")
    assert r.status_code == 200
    request_id = r.headers["x-request-id"]

    def mine() -> list[logging.LogRecord]:
        return [
            rec
            for rec in caplog.records
            if rec.name == ACCESS_LOGGER and getattr(rec, "request_id", None) == request_id
        ]

    [record] = wait_until(mine, timeout=10)
    assert record.route == "/api/v1/files/{entry_id}"  # type: ignore[attr-defined]
    assert record.status == 200  # type: ignore[attr-defined]
    assert record.method == "GET"  # type: ignore[attr-defined]
    assert record.client_ip == "127.0.0.1"  # type: ignore[attr-defined]
    assert record.user_id is not None  # type: ignore[attr-defined]
    assert record.duration_ms >= 0  # type: ignore[attr-defined]
    assert "Bearer" not in record.getMessage()


def test_refusals_are_logged_too(ops_server: LiveServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=ACCESS_LOGGER)
    r = httpx.get(ops_server.url + "/api/v1/me", headers={"Authorization": "Bearer dlk_nope_nope"})
    assert r.status_code == 401
    [record] = access_records(caplog)
    assert record.status == 401  # type: ignore[attr-defined]
    assert record.request_id == r.headers["x-request-id"]  # type: ignore[attr-defined]
    assert "dlk_nope" not in json.dumps(vars(record), default=str)


def test_share_tokens_never_reach_the_log(
    ops_server: LiveServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=ACCESS_LOGGER)
    token = "a" * 43
    r = httpx.get(f"{ops_server.url}/s/{token}/files/xyz")
    assert r.status_code == 404
    [record] = access_records(caplog)
    assert token not in record.getMessage()
    assert record.path == "/s/***/files/xyz"  # type: ignore[attr-defined]
    assert safe_path(f"/s/{token}") == "/s/***"


def test_json_formatter_writes_one_object_per_line() -> None:
    record = logging.LogRecord(
        ACCESS_LOGGER, logging.INFO, __file__, 1, "GET %s %s", ("/x", 200), None
    )
    record.request_id = "abc123"
    record.status = 200
    line = JsonFormatter().format(record)
    assert "\n" not in line
    doc = json.loads(line)
    assert doc["message"] == "GET /x 200"
    assert doc["request_id"] == "abc123"
    assert doc["status"] == 200
    assert doc["level"] == "info"
    assert doc["logger"] == ACCESS_LOGGER


def test_configure_refuses_an_unknown_format() -> None:
    with pytest.raises(ValueError, match="log format"):
        configure("xml")


def test_the_server_writes_json_access_lines_with_the_request_id(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dropline.server.cli",
            "serve",
            "--data-dir",
            str(tmp_path / "data"),
            "--port",
            "0",
            "--log-level",
            "info",
            "--log-format",
            "json",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    assert proc.stderr is not None
    stream = proc.stderr
    reader = threading.Thread(target=lambda: lines.extend(iter(stream.readline, "")), daemon=True)
    reader.start()
    try:
        banner = wait_until(lambda: [x for x in lines if "listening on" in x], timeout=30)
        url = re.search(r"listening on (\S+)", banner[0]).group(1)  # type: ignore[union-attr]
        answer = wait_until(lambda: _get(url + "/healthz"), timeout=30)
        request_id = answer.headers["x-request-id"]

        def logged() -> list[dict[str, object]]:
            docs = [json.loads(x) for x in lines if x.startswith("{")]
            return [d for d in docs if d.get("request_id") == request_id]

        [doc] = wait_until(logged, timeout=10)
    finally:
        proc.terminate()
        proc.wait(15)
        reader.join(10)
        stream.close()
    assert doc["logger"] == ACCESS_LOGGER
    assert doc["path"] == "/healthz"
    assert doc["status"] == 200
    assert doc["message"] == "GET /healthz 200"


def _get(url: str) -> httpx.Response | None:
    try:
        return httpx.get(url)
    except httpx.TransportError:
        return None  # bound, but not listening yet
