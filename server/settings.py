"""Server settings: defaults, ``DROPLINE_*`` environment variables, then flags."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import platformdirs

ENV_PREFIX = "DROPLINE_"


def default_data_dir() -> Path:
    return Path(platformdirs.user_data_dir("dropline-server", appauthor=False))


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(ENV_PREFIX + name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ValueError(f"{ENV_PREFIX}{name} must be an integer, got {raw!r}") from exc


def _env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(ENV_PREFIX + name)
    if raw is None or raw == "":
        return default
    return raw.strip().lower() in {"1", "true", "yes", "on"}


@dataclass(frozen=True, slots=True)
class Settings:
    data_dir: Path = field(default_factory=default_data_dir)
    host: str = "127.0.0.1"
    port: int = 8600
    tls_cert: Path | None = None
    tls_key: Path | None = None
    client_ca: Path | None = None
    # Public base URL used in Location headers and OAuth metadata; derived from
    # the request when unset.
    public_url: str | None = None
    max_upload_bytes: int = 50 * 1024**3
    upload_expiry_seconds: int = 24 * 3600
    change_retention_days: int = 90
    longpoll_max_seconds: int = 120
    page_size_max: int = 1000
    # Security (server.oauth, server.ratelimit, server.defender, server.audit).
    # Proxies whose X-Forwarded-For and client-certificate header are believed (CIDRs).
    trusted_proxies: tuple[str, ...] = ()
    client_cert_header: str = "x-client-cert"
    access_token_seconds: int = 900
    refresh_token_seconds: int = 30 * 24 * 3600
    # Generous per credential so a bulk sync runs at full speed; tight per address on
    # the unauthenticated sign-in endpoints, where guessing happens.
    rate_limit_per_credential: str = "2000/second"
    rate_limit_per_ip: str = "30/second"
    defender_max_failures: int = 10
    defender_window_seconds: int = 300
    defender_ban_seconds: int = 60
    audit_retention_days: int = 365

    @property
    def database_path(self) -> Path:
        return self.data_dir / "dropline.db"

    @property
    def database_url(self) -> str:
        return os.environ.get(ENV_PREFIX + "DATABASE_URL") or f"sqlite:///{self.database_path}"

    @property
    def blob_dir(self) -> Path:
        return self.data_dir / "blobs"

    @property
    def upload_dir(self) -> Path:
        return self.data_dir / "uploads"

    @classmethod
    def from_env(cls, **overrides: Any) -> Settings:
        """Settings from the environment; non-None ``overrides`` (flags) win."""
        env_dir = os.environ.get(ENV_PREFIX + "DATA_DIR")
        base = cls(
            data_dir=Path(env_dir) if env_dir else default_data_dir(),
            host=os.environ.get(ENV_PREFIX + "HOST", "127.0.0.1"),
            port=_env_int("PORT", 8600),
            public_url=os.environ.get(ENV_PREFIX + "PUBLIC_URL") or None,
            max_upload_bytes=_env_int("MAX_UPLOAD_BYTES", 50 * 1024**3),
            upload_expiry_seconds=_env_int("UPLOAD_EXPIRY_SECONDS", 24 * 3600),
            change_retention_days=_env_int("CHANGE_RETENTION_DAYS", 90),
            trusted_proxies=tuple(
                p.strip()
                for p in os.environ.get(ENV_PREFIX + "TRUSTED_PROXIES", "").split(",")
                if p.strip()
            ),
            client_cert_header=os.environ.get(ENV_PREFIX + "CLIENT_CERT_HEADER", "x-client-cert"),
            rate_limit_per_credential=os.environ.get(
                ENV_PREFIX + "RATE_LIMIT_PER_CREDENTIAL", "2000/second"
            ),
            rate_limit_per_ip=os.environ.get(ENV_PREFIX + "RATE_LIMIT_PER_IP", "30/second"),
            audit_retention_days=_env_int("AUDIT_RETENTION_DAYS", 365),
        )
        given = {k: v for k, v in overrides.items() if v is not None}
        if "data_dir" in given:
            given["data_dir"] = Path(given["data_dir"])
        return replace(base, **given)


__all__ = ["Settings", "default_data_dir", "_env_bool"]
