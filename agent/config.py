"""The agent's configuration: the user's TOML file under the administrator's policy file.

Loading validates everything and names the file, the key and what is wrong in every
error. The effective config is: built-in defaults, then the policy's values, then the
user's values for keys the policy does not lock. Credentials never live here.
"""

from __future__ import annotations

import os
import sys
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from dropline.sync.types import AfterUpload, EngineSettings, FolderMode, FolderSpec, LocalEdits

POLICY_ENV = "DROPLINE_POLICY_FILE"
LOCKED_MESSAGE = "set by your administrator"

# Keys a user may set (dotted for tables) and the policy may lock.
USER_KEYS = (
    "server_url",
    "bandwidth.upload_kbps",
    "bandwidth.download_kbps",
    "concurrency",
    "notifications",
    "start_at_login",
)
# Keys only the policy sets; users always see them as locked.
POLICY_ONLY_KEYS = ("allow_add_folders", "allow_sign_out", "enrollment")
LOCKABLE = (*USER_KEYS, "bandwidth")

_SECRET_WORDS = ("key", "token", "secret", "password")


def default_policy_path() -> Path:
    """Where IT puts the policy on this platform (``DROPLINE_POLICY_FILE`` overrides)."""
    env = os.environ.get(POLICY_ENV)
    if env:
        return Path(env)
    if sys.platform == "win32":
        return Path(os.environ.get("PROGRAMDATA", r"C:\ProgramData")) / "Dropline" / "policy.toml"
    if sys.platform == "darwin":
        return Path("/Library/Application Support/Dropline/policy.toml")
    return Path("/etc/dropline/policy.toml")


class ConfigError(Exception):
    """A config problem: which file, which key (None: the whole file), what is wrong."""

    def __init__(self, file: Path | str, key: str | None, problem: str) -> None:
        self.file = str(file)
        self.key = key
        self.problem = problem
        where = f"{self.file}: {key}" if key else self.file
        super().__init__(f"{where}: {problem}")


class LockedError(ConfigError):
    def __init__(self, file: Path | str, key: str) -> None:
        super().__init__(file, key, LOCKED_MESSAGE)


class NotAllowedError(ConfigError):
    pass


# -- file schemas ---------------------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class FolderEntry(_Strict):
    local: str = Field(min_length=1)
    remote: str = "/"
    mode: Literal["two-way", "upload-only", "download-only"] = "two-way"
    ignore: list[str] = Field(default_factory=list)
    after_upload: Literal["keep", "archive", "remove"] = "keep"
    archive_dir: str | None = None
    local_edits: Literal["restore", "report"] = "restore"

    @field_validator("remote")
    @classmethod
    def _remote_absolute(cls, v: str) -> str:
        if not v.startswith("/") or "\\" in v or "\x00" in v:
            raise ValueError("must be an absolute server path starting with '/'")
        if any(part in (".", "..") for part in v.split("/")):
            raise ValueError("must not contain '.' or '..'")
        return str(PurePosixPath(v))


class Bandwidth(_Strict):
    upload_kbps: int | None = Field(default=None, ge=0)
    download_kbps: int | None = Field(default=None, ge=0)


class UserFile(_Strict):
    server_url: str | None = None
    folders: list[FolderEntry] = Field(default_factory=list)
    bandwidth: Bandwidth = Field(default_factory=Bandwidth)
    concurrency: int = Field(default=4, ge=1, le=32)
    notifications: bool = True
    start_at_login: bool = True

    @field_validator("server_url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        return None if v is None else check_server_url(v)


class PolicyFile(UserFile):
    locked: list[str] = Field(default_factory=list)
    allow_add_folders: bool = True
    allow_sign_out: bool = True
    # How the tray offers the first sign-in when there is no credential: the sign-in
    # window with the browser, or a device code shown at once (RFC 8628).
    enrollment: Literal["browser", "device"] = "browser"

    @field_validator("locked")
    @classmethod
    def _lockable(cls, v: list[str]) -> list[str]:
        unknown = sorted(set(v) - set(LOCKABLE))
        if unknown:
            raise ValueError(
                f"cannot lock {', '.join(unknown)} (lockable: {', '.join(LOCKABLE)}; "
                "folders listed in the policy are always locked)"
            )
        return v


def check_server_url(v: str) -> str:
    parts = urlsplit(v)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http:// or https:// URL such as https://mft.example.com")
    if parts.username or parts.password or parts.query or parts.fragment:
        # Credentials in a URL end up in logs and process lists.
        raise ValueError("must not contain a user name, password, query or fragment")
    return v.rstrip("/")


# -- effective configuration ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FolderConfig:
    local: Path
    remote: str = "/"
    mode: FolderMode = FolderMode.TWO_WAY
    ignore: tuple[str, ...] = ()
    after_upload: AfterUpload = AfterUpload.KEEP
    archive_dir: Path | None = None
    local_edits: LocalEdits = LocalEdits.RESTORE
    managed: bool = False  # listed in the policy: locked for the user

    def spec(self) -> FolderSpec:
        return FolderSpec(
            local=self.local,
            remote=self.remote,
            mode=self.mode,
            ignore=self.ignore,
            after_upload=self.after_upload,
            archive_dir=self.archive_dir,
            local_edits=self.local_edits,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "local": str(self.local),
            "remote": self.remote,
            "mode": self.mode.value,
            "ignore": list(self.ignore),
            "after_upload": self.after_upload.value,
            "archive_dir": str(self.archive_dir) if self.archive_dir else None,
            "local_edits": self.local_edits.value,
            "locked": self.managed,
        }


@dataclass(frozen=True, slots=True)
class AgentConfig:
    server_url: str | None = None
    folders: tuple[FolderConfig, ...] = ()
    upload_kbps: int | None = None
    download_kbps: int | None = None
    concurrency: int = 4
    notifications: bool = True
    start_at_login: bool = True
    allow_add_folders: bool = True
    allow_sign_out: bool = True
    enrollment: str = "browser"
    locked: frozenset[str] = frozenset()
    file: Path | None = None
    policy_file: Path | None = None
    # User-file values ignored because the policy locks them, as readable lines.
    refused: tuple[str, ...] = field(default=())

    def is_locked(self, key: str) -> bool:
        return key in POLICY_ONLY_KEYS or key in self.locked

    def engine_settings(self) -> EngineSettings:
        return EngineSettings(
            concurrency=self.concurrency,
            upload_limit_bps=(self.upload_kbps or 0) * 1024 or None,
            download_limit_bps=(self.download_kbps or 0) * 1024 or None,
        )

    def value(self, key: str) -> Any:
        return {
            "server_url": self.server_url,
            "bandwidth.upload_kbps": self.upload_kbps,
            "bandwidth.download_kbps": self.download_kbps,
            "concurrency": self.concurrency,
            "notifications": self.notifications,
            "start_at_login": self.start_at_login,
            "allow_add_folders": self.allow_add_folders,
            "allow_sign_out": self.allow_sign_out,
            "enrollment": self.enrollment,
        }[key]

    def settings(self) -> dict[str, dict[str, Any]]:
        return {
            key: {"value": self.value(key), "locked": self.is_locked(key)}
            for key in (*USER_KEYS, *POLICY_ONLY_KEYS)
        }

    def folder(self, local: Path | str) -> FolderConfig | None:
        target = normalise_local(str(local))
        return next((f for f in self.folders if f.local == target), None)


def normalise_local(value: str) -> Path:
    return Path(os.path.normpath(Path(value).expanduser().absolute()))


# -- loading --------------------------------------------------------------------------------


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, None, f"not valid TOML: {exc}") from None
    except PermissionError:
        raise ConfigError(path, None, "cannot be read (permission denied)") from None
    except IsADirectoryError:
        raise ConfigError(path, None, "is a directory, not a file") from None


def _model_error(path: Path, exc: ValidationError) -> ConfigError:
    err = exc.errors()[0]
    key = _dotted(err["loc"])
    if err["type"] == "extra_forbidden":
        leaf = str(err["loc"][-1]).lower()
        if any(word in leaf for word in _SECRET_WORDS):
            return ConfigError(
                path,
                key,
                "credentials never go in a config file: use 'dropline-agent login', "
                "the OS keyring, or DROPLINE_API_KEY in the service's environment",
            )
        return ConfigError(path, key, "is not a known setting")
    msg = err["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    if "input" in err and err["type"] not in ("missing",):
        msg = f"{msg} (got {err['input']!r})"
    return ConfigError(path, key, msg)


def _dotted(loc: Iterable[int | str]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out or "(top level)"


def parse_user(path: Path, data: Mapping[str, Any]) -> UserFile:
    try:
        return UserFile.model_validate(data)
    except ValidationError as exc:
        raise _model_error(path, exc) from None


def parse_policy(path: Path, data: Mapping[str, Any]) -> PolicyFile:
    try:
        return PolicyFile.model_validate(data)
    except ValidationError as exc:
        raise _model_error(path, exc) from None


def load(config_path: Path, policy_path: Path | None = None) -> AgentConfig:
    """The effective config; :class:`ConfigError` when either file is invalid.

    A missing user file is an empty one; a missing policy file is no policy.
    """
    policy_path = policy_path if policy_path is not None else default_policy_path()
    policy = PolicyFile()
    policy_used: Path | None = None
    if policy_path.exists():
        policy = parse_policy(policy_path, read_toml(policy_path))
        policy_used = policy_path
    user_data = read_toml(config_path) if config_path.exists() else {}
    user = parse_user(config_path, user_data)
    return merge(policy, user, user_data, config_path, policy_used)


def _expand_locked(locked: Iterable[str]) -> frozenset[str]:
    out = set(locked)
    if "bandwidth" in out:
        out.discard("bandwidth")
        out |= {"bandwidth.upload_kbps", "bandwidth.download_kbps"}
    return frozenset(out)


def _user_sets(data: Mapping[str, Any], key: str) -> bool:
    head, _, tail = key.partition(".")
    if not tail:
        return head in data
    table = data.get(head)
    return isinstance(table, Mapping) and tail in table


def _folder(path: Path, index: int, entry: FolderEntry, managed: bool) -> FolderConfig:
    local = Path(entry.local).expanduser()
    if not local.is_absolute():
        raise ConfigError(
            path, f"folders[{index}].local", f"must be an absolute path (got {entry.local!r})"
        )
    archive = Path(entry.archive_dir).expanduser() if entry.archive_dir else None
    if archive is not None and not archive.is_absolute():
        raise ConfigError(
            path,
            f"folders[{index}].archive_dir",
            f"must be an absolute path (got {entry.archive_dir!r})",
        )
    if entry.after_upload == "archive" and archive is None:
        raise ConfigError(
            path, f"folders[{index}].archive_dir", 'is required when after_upload = "archive"'
        )
    if entry.mode != "upload-only" and entry.after_upload != "keep":
        raise ConfigError(
            path, f"folders[{index}].after_upload", "applies to upload-only folders only"
        )
    return FolderConfig(
        local=normalise_local(str(local)),
        remote=entry.remote,
        mode=FolderMode(entry.mode),
        ignore=tuple(entry.ignore),
        after_upload=AfterUpload(entry.after_upload),
        archive_dir=Path(os.path.normpath(archive)) if archive else None,
        local_edits=LocalEdits(entry.local_edits),
        managed=managed,
    )


def _overlap(a: Path, b: Path) -> bool:
    return a == b or a.is_relative_to(b) or b.is_relative_to(a)


def merge(
    policy: PolicyFile,
    user: UserFile,
    user_data: Mapping[str, Any],
    config_path: Path,
    policy_path: Path | None,
) -> AgentConfig:
    locked = _expand_locked(policy.locked)
    refused: list[str] = []
    values: dict[str, Any] = {}
    for key in USER_KEYS:
        head, _, tail = key.partition(".")
        policy_value = getattr(getattr(policy, head), tail) if tail else getattr(policy, head)
        user_value = getattr(getattr(user, head), tail) if tail else getattr(user, head)
        if _user_sets(user_data, key):
            if key in locked:
                refused.append(f"{config_path}: {key}: {LOCKED_MESSAGE} (your value is ignored)")
                values[key] = policy_value
            else:
                values[key] = user_value
        else:
            values[key] = policy_value
    folders: list[FolderConfig] = []
    ppath = policy_path or Path("policy.toml")
    for i, entry in enumerate(policy.folders):
        folders.append(_folder(ppath, i, entry, managed=True))
    for i, entry in enumerate(user.folders):
        if not policy.allow_add_folders:
            refused.append(f"{config_path}: folders[{i}]: {LOCKED_MESSAGE} (adding folders is off)")
            continue
        fc = _folder(config_path, i, entry, managed=False)
        clash = next((f for f in folders if _overlap(f.local, fc.local)), None)
        if clash is not None and clash.managed:
            refused.append(
                f"{config_path}: folders[{i}]: {LOCKED_MESSAGE} ({clash.local} is managed)"
            )
            continue
        if clash is not None:
            raise ConfigError(
                config_path, f"folders[{i}].local", f"overlaps another folder ({clash.local})"
            )
        folders.append(fc)
    return AgentConfig(
        server_url=values["server_url"],
        folders=tuple(folders),
        upload_kbps=values["bandwidth.upload_kbps"],
        download_kbps=values["bandwidth.download_kbps"],
        concurrency=values["concurrency"],
        notifications=values["notifications"],
        start_at_login=values["start_at_login"],
        allow_add_folders=policy.allow_add_folders,
        allow_sign_out=policy.allow_sign_out,
        enrollment=policy.enrollment,
        locked=locked,
        file=config_path,
        policy_file=policy_path,
        refused=tuple(refused),
    )
