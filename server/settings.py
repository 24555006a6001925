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


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(ENV_PREFIX + name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise ValueError(f"{ENV_PREFIX}{name} must be a number, got {raw!r}") from exc


def _env_schedule(name: str, default: tuple[float, ...]) -> tuple[float, ...]:
    """A comma-separated list of delays in seconds, such as ``5,300,1800``."""
    raw = os.environ.get(ENV_PREFIX + name)
    if raw is None or raw.strip() == "":
        return default
    try:
        delays = tuple(float(part) for part in raw.split(",") if part.strip())
    except ValueError as exc:
        raise ValueError(
            f"{ENV_PREFIX}{name} must be comma-separated seconds, got {raw!r}"
        ) from exc
    if not delays or any(d < 0 for d in delays):
        raise ValueError(f"{ENV_PREFIX}{name} must list at least one delay, none negative")
    return delays


# Delays before each retry of a webhook delivery: about three days in all.
# 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 14 h, 20 h, 20 h.
DEFAULT_WEBHOOK_RETRY_SCHEDULE: tuple[float, ...] = (5, 300, 1800, 7200, 18000, 36000)
DEFAULT_WEBHOOK_RETRY_SCHEDULE += (50400, 72000, 72000)
# Delays before each retry of a push transfer after a transient failure.
DEFAULT_TRANSFER_RETRY_SCHEDULE: tuple[float, ...] = (10, 60, 300, 1800, 3600)


DEFAULT_RATE_LIMIT_PER_CREDENTIAL = "500/second"
DEFAULT_RATE_LIMIT_PER_ENDPOINT = "100/second"


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
    # How often version and trash retention runs (files.housekeeping).
    housekeeping_seconds: float = 3600.0
    # How old unreferenced blobs, expired uploads and ended share links must be before
    # the sweeper (files.sweeper) removes them: nothing still in flight is touched.
    sweep_grace_seconds: float = 3600.0
    longpoll_max_seconds: int = 120
    page_size_max: int = 1000
    # Security (identity.oauth, guard.ratelimit, guard.defender, audit.trail).
    # Proxies whose X-Forwarded-For and client-certificate header are believed (CIDRs).
    trusted_proxies: tuple[str, ...] = ()
    client_cert_header: str = "x-client-cert"
    access_token_seconds: int = 900
    refresh_token_seconds: int = 30 * 24 * 3600
    # Per credential: about three times an agent's busiest second in its benchmarks, and
    # per credential and URL for reads, which a sync client spreads over many URLs and a
    # runaway script does not (docs/security.md has the figures). Tight per address on
    # the unauthenticated sign-in endpoints, where guessing happens.
    rate_limit_per_credential: str = DEFAULT_RATE_LIMIT_PER_CREDENTIAL
    rate_limit_per_endpoint: str = DEFAULT_RATE_LIMIT_PER_ENDPOINT
    rate_limit_per_ip: str = "30/second"
    defender_max_failures: int = 10
    defender_window_seconds: int = 300
    defender_ban_seconds: int = 60
    audit_retention_days: int = 365
    # Operations (transfers, webhooks, guard.outbound, http.access_log).
    # Outbound calls (webhooks, push transfers) to private, loopback or link-local
    # addresses, and over plain http, are refused unless an admin allows them (tests, demo).
    allow_private_targets: bool = False
    webhook_timeout_seconds: float = 10.0
    webhook_retry_schedule: tuple[float, ...] = DEFAULT_WEBHOOK_RETRY_SCHEDULE
    webhook_secret_overlap_seconds: int = 24 * 3600
    webhook_concurrency: int = 8
    transfer_workers: int = 2
    transfer_retry_schedule: tuple[float, ...] = DEFAULT_TRANSFER_RETRY_SCHEDULE
    transfer_timeout_seconds: float = 300.0
    inbox_path: str = "/Inbox"
    # How often the transfer and webhook workers look for due work they were not woken for.
    worker_poll_seconds: float = 1.0
    # How long a node's hold on a running transfer job lasts unrenewed (storage.leases):
    # the longest a job waits for another node after its node died.
    work_lease_seconds: float = 30.0
    # How often a node sharing a PostgreSQL database re-reads the signing keys
    # (identity.key_table); a token naming an unknown key triggers a re-read at once.
    # The master key for encryption at rest is read by storage.encryption itself from
    # DROPLINE_MASTER_KEY_FILE (preferred) or DROPLINE_MASTER_KEY: the CLI needs it too.
    signing_key_refresh_seconds: float = 30.0
    log_format: str = "text"  # or "json": one JSON object per line
    access_log: bool = True

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
    def blob_url(self) -> str:
        """Where blobs live (``storage.blob_url``): ``DROPLINE_BLOB_URL`` (``file:///PATH``
        or ``s3://BUCKET/PREFIX``), by default the data directory's blob folder. Read from
        the environment each time, as ``database_url`` is."""
        return os.environ.get(ENV_PREFIX + "BLOB_URL") or self.blob_dir.absolute().as_uri()

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
            housekeeping_seconds=_env_float("HOUSEKEEPING_SECONDS", 3600.0),
            sweep_grace_seconds=_env_float("SWEEP_GRACE_SECONDS", 3600.0),
            trusted_proxies=tuple(
                p.strip()
                for p in os.environ.get(ENV_PREFIX + "TRUSTED_PROXIES", "").split(",")
                if p.strip()
            ),
            client_cert_header=os.environ.get(ENV_PREFIX + "CLIENT_CERT_HEADER", "x-client-cert"),
            rate_limit_per_credential=os.environ.get(ENV_PREFIX + "RATE_LIMIT_PER_CREDENTIAL")
            or DEFAULT_RATE_LIMIT_PER_CREDENTIAL,
            rate_limit_per_endpoint=os.environ.get(ENV_PREFIX + "RATE_LIMIT_PER_ENDPOINT")
            or DEFAULT_RATE_LIMIT_PER_ENDPOINT,
            rate_limit_per_ip=os.environ.get(ENV_PREFIX + "RATE_LIMIT_PER_IP", "30/second"),
            audit_retention_days=_env_int("AUDIT_RETENTION_DAYS", 365),
            allow_private_targets=_env_bool("ALLOW_PRIVATE_TARGETS", False),
            webhook_timeout_seconds=_env_float("WEBHOOK_TIMEOUT_SECONDS", 10.0),
            webhook_retry_schedule=_env_schedule(
                "WEBHOOK_RETRY_SCHEDULE", DEFAULT_WEBHOOK_RETRY_SCHEDULE
            ),
            transfer_workers=_env_int("TRANSFER_WORKERS", 2),
            transfer_retry_schedule=_env_schedule(
                "TRANSFER_RETRY_SCHEDULE", DEFAULT_TRANSFER_RETRY_SCHEDULE
            ),
            worker_poll_seconds=_env_float("WORKER_POLL_SECONDS", 1.0),
            work_lease_seconds=_env_float("WORK_LEASE_SECONDS", 30.0),
            signing_key_refresh_seconds=_env_float("SIGNING_KEY_REFRESH_SECONDS", 30.0),
            inbox_path=os.environ.get(ENV_PREFIX + "INBOX_PATH") or "/Inbox",
            log_format=os.environ.get(ENV_PREFIX + "LOG_FORMAT") or "text",
            access_log=_env_bool("ACCESS_LOG", True),
        )
        given = {k: v for k, v in overrides.items() if v is not None}
        if "data_dir" in given:
            given["data_dir"] = Path(given["data_dir"])
        return replace(base, **given)


__all__ = ["Settings", "default_data_dir"]
