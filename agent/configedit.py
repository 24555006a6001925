"""Changes to the user's agent.toml from the CLI and the control socket.

Edits go through tomlkit so the user's comments and layout survive; every edit is
checked against the policy and validated as a whole before the file is replaced
atomically, so a refused or invalid change leaves the file as it was.
"""

from __future__ import annotations

import os
import tempfile
import tomllib
from pathlib import Path
from typing import Any

import tomlkit
from tomlkit.items import AoT

from dropline.agent.config import (
    POLICY_ONLY_KEYS,
    USER_KEYS,
    AgentConfig,
    ConfigError,
    FolderConfig,
    LockedError,
    NotAllowedError,
    PolicyFile,
    default_policy_path,
    load,
    merge,
    normalise_local,
    parse_policy,
    parse_user,
    read_toml,
)


class ConfigEditor:
    def __init__(self, config_path: Path, policy_path: Path | None = None) -> None:
        self.config_path = config_path
        self.policy_path = policy_path if policy_path is not None else default_policy_path()

    def current(self) -> AgentConfig:
        return load(self.config_path, self.policy_path)

    def _document(self) -> tomlkit.TOMLDocument:
        if not self.config_path.exists():
            return tomlkit.document()
        try:
            return tomlkit.parse(self.config_path.read_text(encoding="utf-8"))
        except Exception as exc:  # tomlkit raises several unrelated types for bad TOML
            raise ConfigError(self.config_path, None, f"not valid TOML: {exc}") from None

    def _policy(self) -> tuple[PolicyFile, Path | None]:
        if self.policy_path.exists():
            return parse_policy(self.policy_path, read_toml(self.policy_path)), self.policy_path
        return PolicyFile(), None

    def _commit(self, doc: tomlkit.TOMLDocument) -> AgentConfig:
        text = tomlkit.dumps(doc)
        data = tomllib.loads(text)
        user = parse_user(self.config_path, data)
        policy, policy_used = self._policy()
        config = merge(policy, user, data, self.config_path, policy_used)
        atomic_write(self.config_path, text)
        return config

    def set(self, key: str, value: Any) -> AgentConfig:
        config = self.current()
        if key in POLICY_ONLY_KEYS or config.is_locked(key):
            raise LockedError(self.config_path, key)
        if key not in USER_KEYS:
            raise ConfigError(
                self.config_path, key, f"is not a setting (settings: {', '.join(USER_KEYS)})"
            )
        doc = self._document()
        head, _, tail = key.partition(".")
        if tail:
            table = doc.get(head)
            if table is None:
                if value is None:
                    return config
                table = tomlkit.table()
                doc[head] = table
            if value is None:
                table.pop(tail, None)
            else:
                table[tail] = value
        elif value is None:
            doc.pop(head, None)
        else:
            doc[head] = value
        return self._commit(doc)

    def add_folder(self, entry: dict[str, Any]) -> tuple[AgentConfig, FolderConfig]:
        config = self.current()
        if not config.allow_add_folders:
            raise NotAllowedError(
                self.config_path, "folders", "adding folders is turned off by your administrator"
            )
        local = normalise_local(str(entry["local"]))
        existing = config.folder(local)
        if existing is not None:
            if existing.managed:
                raise LockedError(self.config_path, f"folders ({local})")
            raise ConfigError(self.config_path, "folders", f"{local} is already a sync folder")
        clean = {k: v for k, v in entry.items() if v is not None and v != [] and v != ""}
        clean["local"] = str(local)
        doc = self._document()
        folders = doc.get("folders")
        if folders is None:
            folders = tomlkit.aot()
            doc["folders"] = folders
        if not isinstance(folders, AoT):
            raise ConfigError(self.config_path, "folders", "must be a list of [[folders]] tables")
        table = tomlkit.table()
        for k, v in clean.items():
            table[k] = v
        folders.append(table)
        new = self._commit(doc)
        added = new.folder(local)
        assert added is not None
        return new, added

    def remove_folder(self, local: str | Path) -> AgentConfig:
        config = self.current()
        target = normalise_local(str(local))
        existing = config.folder(target)
        if existing is None:
            raise ConfigError(self.config_path, "folders", f"{target} is not a sync folder")
        if existing.managed:
            raise LockedError(self.config_path, f"folders ({target})")
        doc = self._document()
        folders = doc.get("folders")
        if not isinstance(folders, AoT):
            raise ConfigError(self.config_path, "folders", f"{target} is not in this file")
        keep = [t for t in folders if normalise_local(str(t.get("local", ""))) != target]
        new_aot = tomlkit.aot()
        for t in keep:
            new_aot.append(t)
        if keep:
            doc["folders"] = new_aot
        else:
            doc.pop("folders", None)
        return self._commit(doc)


def atomic_write(path: Path, text: str, mode: int = 0o600) -> None:
    """Replace ``path`` with ``text`` (``mode``, private by default): a crash leaves the
    old or the new file."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
