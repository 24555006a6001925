"""The master key settings on one node: ``DROPLINE_MASTER_KEY_FILE`` (a 0600 file) is
read and preferred to the data dir's key; a loose file, a malformed key, or both
settings at once are refused with a clear message and nothing written."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest

from dropline.server.storage.encryption import EncryptionError, load_master_key


def write_key(path: Path, key: bytes, mode: int = 0o600) -> Path:
    path.write_bytes(base64.b64encode(key) + b"\n")
    path.chmod(mode)
    return path


@pytest.fixture(autouse=True)
def no_key_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DROPLINE_MASTER_KEY", raising=False)
    monkeypatch.delenv("DROPLINE_MASTER_KEY_FILE", raising=False)


def test_the_key_file_is_read_and_wins_over_the_data_dirs_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data_dir = tmp_path / "data"
    own = load_master_key(data_dir, create=True)
    given = os.urandom(32)
    monkeypatch.setenv("DROPLINE_MASTER_KEY_FILE", str(write_key(tmp_path / "m.key", given)))
    assert load_master_key(data_dir) == given != own
    # Asked to create one, the node still uses the key it was given and makes none.
    assert load_master_key(tmp_path / "other", create=True) == given
    assert not (tmp_path / "other" / "keys" / "master.key").exists()


def test_a_key_file_others_can_read_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loose = write_key(tmp_path / "m.key", os.urandom(32), mode=0o640)
    monkeypatch.setenv("DROPLINE_MASTER_KEY_FILE", str(loose))
    with pytest.raises(EncryptionError, match="chmod 600"):
        load_master_key(tmp_path / "data", create=True)
    assert not (tmp_path / "data" / "keys" / "master.key").exists()


@pytest.mark.parametrize(
    "content",
    [b"not base64 at all!", base64.b64encode(bytes(range(16))), b""],
    ids=["not-base64", "16-bytes", "empty"],
)
def test_a_malformed_key_file_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: bytes
) -> None:
    path = tmp_path / "m.key"
    path.write_bytes(content)
    path.chmod(0o600)
    monkeypatch.setenv("DROPLINE_MASTER_KEY_FILE", str(path))
    with pytest.raises(EncryptionError, match="base64 of 32 bytes"):
        load_master_key(tmp_path / "data")


def test_a_missing_key_file_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DROPLINE_MASTER_KEY_FILE", str(tmp_path / "absent.key"))
    with pytest.raises(EncryptionError, match="no such file"):
        load_master_key(tmp_path / "data", create=True)
    assert not (tmp_path / "data" / "keys" / "master.key").exists()


def test_both_settings_at_once_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DROPLINE_MASTER_KEY_FILE", str(write_key(tmp_path / "m", os.urandom(32))))
    monkeypatch.setenv("DROPLINE_MASTER_KEY", base64.b64encode(os.urandom(32)).decode())
    with pytest.raises(EncryptionError, match="not both"):
        load_master_key(tmp_path / "data")
