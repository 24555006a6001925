"""Log files: rotating, text or JSON lines, with anything token-like redacted."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from dropline.agent import logs


@pytest.fixture
def restore_root() -> Iterator[None]:
    root = logging.getLogger()
    before, level = list(root.handlers), root.level
    yield
    for h in list(root.handlers):
        if h not in before:
            root.removeHandler(h)
            h.close()
    root.setLevel(level)


SECRETS = [
    "dlk_AbCdEf0123456789xyz",
    "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl",
    "rt_refresh_abcdef123456",
]


def test_text_log_redacts_secrets_in_messages_args_and_tracebacks(
    tmp_path: Path, restore_root: None
) -> None:
    path = logs.setup(tmp_path / "logs")
    assert path is not None and (path.stat().st_mode & 0o777) == 0o600
    log = logging.getLogger("agent.test")
    log.info("key %s", SECRETS[0])
    log.info("header Authorization: Bearer %s", SECRETS[1])
    log.info("form refresh_token=%s&client_id=dropline-desktop", SECRETS[2])
    log.info('body {"refresh_token": "%s"}', SECRETS[2])
    try:
        raise ValueError(f"bad token {SECRETS[0]}")
    except ValueError:
        log.exception("failed")
    text = path.read_text()
    for secret in SECRETS:
        assert secret not in text
    assert text.count("[redacted]") >= 5
    assert "client_id=dropline-desktop" in text
    assert "ValueError" in text


def test_json_lines_on_request(tmp_path: Path, restore_root: None) -> None:
    path = logs.setup(tmp_path / "logs", json_lines=True)
    assert path is not None
    logging.getLogger("agent.test").warning("signed in with %s", SECRETS[0])
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert lines[-1]["level"] == "warning"
    assert lines[-1]["logger"] == "agent.test"
    assert lines[-1]["message"] == "signed in with [redacted]"


def test_files_rotate(tmp_path: Path, restore_root: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(logs, "MAX_BYTES", 2000)
    path = logs.setup(tmp_path / "logs")
    assert path is not None
    for i in range(200):
        logging.getLogger("agent.test").info("line %d %s", i, "x" * 50)
    assert (tmp_path / "logs" / "agent.log.1").exists()
    assert path.stat().st_size <= 2000


def test_verbose_adds_console(
    tmp_path: Path, restore_root: None, capsys: pytest.CaptureFixture[str]
) -> None:
    logs.setup(None, verbose=True)
    logging.getLogger("agent.test").debug("hello %s", SECRETS[0])
    err = capsys.readouterr().err
    assert "hello [redacted]" in err
