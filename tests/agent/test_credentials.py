"""Credentials in the keyring per server, the environment override, and no silent fallback."""

from __future__ import annotations

from pathlib import Path

import keyring.backend
import pytest
from keyring.backends import chainer, fail

from dropline.agent.credentials import CredentialStore, NoKeyringError, keyring_status
from tests.agent.keyring_backend import MemoryKeyring

URL = "https://mft.example.com"


@pytest.fixture(autouse=True)
def _no_env_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DROPLINE_API_KEY", raising=False)


def test_api_key_round_trips_per_server() -> None:
    kr = MemoryKeyring()
    store = CredentialStore(URL + "/", kr)
    store.save_api_key("dlk_one")
    other = CredentialStore("https://other.example.com", kr)
    cred = store.load()
    assert cred is not None and (cred.kind, cred.secret, cred.source) == (
        "api_key",
        "dlk_one",
        "keyring",
    )
    assert other.load() is None
    assert "dlk_one" not in repr(cred)


def test_refresh_token_replaces_api_key_and_clear_removes_both() -> None:
    kr = MemoryKeyring()
    store = CredentialStore(URL, kr)
    store.save_api_key("dlk_one")
    store.save_refresh_token("rt-1")
    cred = store.load()
    assert cred is not None and cred.kind == "oauth" and cred.secret == "rt-1"
    store.clear()
    assert store.load() is None
    assert kr.entries == {}


def test_environment_key_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    kr = MemoryKeyring()
    store = CredentialStore(URL, kr)
    store.save_refresh_token("rt-1")
    monkeypatch.setenv("DROPLINE_API_KEY", "dlk_env")
    cred = store.load()
    assert cred is not None and (cred.kind, cred.secret, cred.source) == (
        "api_key",
        "dlk_env",
        "env",
    )


@pytest.mark.parametrize("backend", [fail.Keyring(), chainer.ChainerBackend()])
def test_no_keyring_says_so_and_offers_alternatives(
    backend: object, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The chainer finds nothing to chain, as on a headless machine without D-Bus.
    monkeypatch.setattr(keyring.backend, "get_all_keyring", lambda: [])
    store = CredentialStore(URL, backend)  # type: ignore[arg-type]
    status = store.status()
    assert not status.usable and status.problem is not None
    with pytest.raises(NoKeyringError) as err:
        store.save_refresh_token("rt-secret")
    message = str(err.value)
    assert "DROPLINE_API_KEY" in message and "keyrings.cryptfile" in message
    assert store.load() is None
    # Nothing was written anywhere as a fallback.
    assert list(tmp_path.iterdir()) == []


def test_real_backend_reports_usable() -> None:
    assert keyring_status(MemoryKeyring()).usable
