"""Where the agent's credentials live: the OS keyring, per server URL, or DROPLINE_API_KEY.

An API key or an OAuth refresh token is stored in the keyring under the service
``dropline <server URL>``. ``DROPLINE_API_KEY`` in the environment wins over both.
Where no keyring backend works (a headless Linux box), storing fails with
:class:`NoKeyringError` naming the alternatives: there is no plaintext fallback.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Literal

import keyring
import keyring.errors
from keyring.backend import KeyringBackend
from keyring.backends import chainer, fail, null

log = logging.getLogger(__name__)

API_KEY_ENV = "DROPLINE_API_KEY"
API_KEY_USER = "api-key"
REFRESH_USER = "oauth-refresh-token"

ALTERNATIVES = (
    "no usable OS keyring was found (on a headless Linux machine there is often none). "
    "Either set DROPLINE_API_KEY in the agent's service environment "
    "(for example an EnvironmentFile= of mode 0600 in its systemd unit), or install and "
    "configure an encrypted file keyring such as keyrings.cryptfile "
    "(PYTHON_KEYRING_BACKEND=keyrings.cryptfile.cryptfile.CryptFileKeyring and its "
    "KEYRING_CRYPTFILE_PASSWORD); see docs/deployment.md"
)


class NoKeyringError(Exception):
    def __init__(self) -> None:
        super().__init__(ALTERNATIVES)


@dataclass(frozen=True, slots=True)
class Credential:
    kind: Literal["api_key", "oauth"]
    secret: str  # the API key, or the refresh token
    source: Literal["env", "keyring"]

    def __repr__(self) -> str:
        return f"Credential(kind={self.kind!r}, source={self.source!r}, secret=<hidden>)"


@dataclass(frozen=True, slots=True)
class KeyringStatus:
    usable: bool
    backend: str
    problem: str | None = None


def keyring_status(backend: KeyringBackend | None = None) -> KeyringStatus:
    kr = backend or keyring.get_keyring()
    name = f"{type(kr).__module__}.{type(kr).__name__}"
    if isinstance(kr, fail.Keyring | null.Keyring):
        return KeyringStatus(False, name, ALTERNATIVES)
    if isinstance(kr, chainer.ChainerBackend) and not kr.backends:
        return KeyringStatus(False, name, ALTERNATIVES)
    return KeyringStatus(True, name)


class CredentialStore:
    """The credentials for one server URL."""

    def __init__(self, server_url: str, backend: KeyringBackend | None = None) -> None:
        self.server_url = server_url.rstrip("/")
        self._backend = backend

    @property
    def service(self) -> str:
        return f"dropline {self.server_url}"

    def _kr(self) -> KeyringBackend:
        return self._backend or keyring.get_keyring()

    def status(self) -> KeyringStatus:
        return keyring_status(self._kr())

    def _get(self, user: str) -> str | None:
        if not self.status().usable:
            return None
        try:
            return self._kr().get_password(self.service, user)
        except keyring.errors.KeyringError as exc:
            log.warning("the keyring could not be read: %s", type(exc).__name__)
            return None

    def _set(self, user: str, secret: str) -> None:
        if not self.status().usable:
            raise NoKeyringError()
        try:
            self._kr().set_password(self.service, user, secret)
        except keyring.errors.KeyringError as exc:
            raise NoKeyringError() from exc

    def _delete(self, user: str) -> None:
        if not self.status().usable:
            return
        try:
            self._kr().delete_password(self.service, user)
        except keyring.errors.PasswordDeleteError:
            pass
        except keyring.errors.KeyringError as exc:
            log.warning("the keyring entry could not be removed: %s", type(exc).__name__)

    def load(self) -> Credential | None:
        """The credential to use: DROPLINE_API_KEY, then a stored API key, then OAuth."""
        env = os.environ.get(API_KEY_ENV, "").strip()
        if env:
            return Credential("api_key", env, "env")
        key = self._get(API_KEY_USER)
        if key:
            return Credential("api_key", key, "keyring")
        refresh = self._get(REFRESH_USER)
        if refresh:
            return Credential("oauth", refresh, "keyring")
        return None

    def save_api_key(self, key: str) -> None:
        self._set(API_KEY_USER, key)
        self._delete(REFRESH_USER)

    def save_refresh_token(self, token: str) -> None:
        self._set(REFRESH_USER, token)
        self._delete(API_KEY_USER)

    def refresh_token(self) -> str | None:
        return self._get(REFRESH_USER)

    def clear(self) -> None:
        self._delete(API_KEY_USER)
        self._delete(REFRESH_USER)
