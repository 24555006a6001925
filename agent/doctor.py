"""``dropline-agent doctor``: checks the setup and says how to fix each problem found."""

from __future__ import annotations

import email.utils
import os
import shutil
import ssl
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from dropline.agent.config import AgentConfig, ConfigError, load
from dropline.agent.control.client import AgentNotRunning, ControlClient
from dropline.agent.control.protocol import ControlError
from dropline.agent.credentials import API_KEY_ENV, CredentialStore
from dropline.agent.paths import AgentPaths

MAX_SKEW = 60.0  # seconds; access tokens are checked against their issue and expiry times
MIN_FREE_BYTES = 1024**3
INOTIFY_WATCHES = Path("/proc/sys/fs/inotify/max_user_watches")
DIR_COUNT_CAP = 200_000  # stop counting directories here; enough to judge the limit


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "ok": self.ok, "detail": self.detail, "fix": self.fix}


def run_checks(paths: AgentPaths, transport: httpx.BaseTransport | None = None) -> list[Check]:
    checks: list[Check] = []
    try:
        config = load(paths.config)
    except ConfigError as exc:
        checks.append(
            Check("config", False, str(exc), f"edit {exc.file} and fix {exc.key or 'the syntax'}")
        )
        return checks
    detail = f"{paths.config}" + (" (not created yet)" if not paths.config.exists() else "")
    if config.refused:
        checks.append(
            Check(
                "config", False, "; ".join(config.refused), "remove those settings from your file"
            )
        )
    else:
        checks.append(Check("config", True, detail))
    checks.append(_agent_running(paths))
    checks += _credentials(config)
    if config.server_url:
        checks += _server(config, transport)
    checks += _folders(config)
    checks.append(_inotify(config))
    checks += _disk(paths, config)
    checks.append(_home_permissions(paths))
    return checks


def _agent_running(paths: AgentPaths) -> Check:
    try:
        with ControlClient(paths.socket, timeout=5) as c:
            state = c.call("status")["state"]
        return Check("agent", True, f"running, {state}")
    except AgentNotRunning:
        return Check(
            "agent",
            False,
            "not running",
            "start it: dropline-agent run (or: dropline-agent autostart enable)",
        )
    except (ControlError, OSError) as exc:
        return Check("agent", False, f"not answering: {exc}", "restart the agent")


def _credentials(config: AgentConfig) -> list[Check]:
    if not config.server_url:
        return [
            Check(
                "server_url",
                False,
                "no server_url is set",
                'add server_url = "https://..." to agent.toml',
            )
        ]
    store = CredentialStore(config.server_url)
    status = store.status()
    out: list[Check] = []
    if os.environ.get(API_KEY_ENV):
        out.append(Check("credentials", True, f"API key from {API_KEY_ENV}"))
        return out
    if status.usable:
        out.append(Check("keyring", True, status.backend))
    else:
        out.append(Check("keyring", False, f"no usable keyring ({status.backend})", status.problem))
        return out
    cred = store.load()
    if cred is None:
        out.append(
            Check("credentials", False, "not signed in", "dropline-agent login (or login --device)")
        )
    else:
        kind = "API key" if cred.kind == "api_key" else "OAuth sign-in"
        out.append(Check("credentials", True, f"{kind} in the keyring"))
    return out


def _server(config: AgentConfig, transport: httpx.BaseTransport | None) -> list[Check]:
    url = config.server_url or ""
    try:
        with httpx.Client(timeout=10.0, transport=transport) as http:
            before = time.time()
            resp = http.get(f"{url}/healthz")
            after = time.time()
    except httpx.ConnectError as exc:
        cause = exc.__context__ or exc.__cause__
        if isinstance(cause, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in str(
            exc
        ):
            return [
                Check(
                    "tls",
                    False,
                    f"the certificate of {url} is not trusted: {cause or exc}",
                    "install your organisation's CA certificate in the system store "
                    "(or set SSL_CERT_FILE for the agent)",
                )
            ]
        return [
            Check(
                "server",
                False,
                f"cannot connect to {url}",
                "check server_url, the network, proxies and firewalls",
            )
        ]
    except httpx.HTTPError as exc:
        return [
            Check(
                "server", False, f"{url}: {type(exc).__name__}", "check server_url and the network"
            )
        ]
    out = [
        Check(
            "server",
            resp.status_code < 500,
            f"{url} answered HTTP {resp.status_code}",
            None if resp.status_code < 500 else "the server has a problem; ask its operators",
        )
    ]
    if url.startswith("https://"):
        out.append(Check("tls", True, "certificate verified"))
    else:
        host = httpx.URL(url).host
        loopback = host in ("127.0.0.1", "localhost", "::1")
        out.append(
            Check(
                "tls",
                loopback,
                "plain HTTP" + (" on loopback" if loopback else ""),
                None if loopback else "use an https:// server_url",
            )
        )
    out.append(_clock(resp, (before + after) / 2))
    return out


def _clock(resp: httpx.Response, local: float) -> Check:
    header = resp.headers.get("date")
    if not header:
        return Check("clock", True, "the server sent no Date header; skew not checked")
    try:
        server = email.utils.parsedate_to_datetime(header).timestamp()
    except (TypeError, ValueError):
        return Check("clock", True, "the server's Date header is unreadable; skew not checked")
    skew = local - server
    ok = abs(skew) <= MAX_SKEW
    return Check(
        "clock",
        ok,
        f"{skew:+.0f} s against the server",
        None if ok else "turn on network time sync (timedatectl set-ntp true)",
    )


def _folders(config: AgentConfig) -> list[Check]:
    out = []
    for f in config.folders:
        if not f.local.exists():
            out.append(Check(f"folder {f.local}", False, "does not exist", f"mkdir -p '{f.local}'"))
        elif not os.access(f.local, os.R_OK | os.W_OK | os.X_OK):
            out.append(
                Check(
                    f"folder {f.local}",
                    False,
                    "not readable and writable by you",
                    f"chown -R $USER '{f.local}' && chmod u+rwx '{f.local}'",
                )
            )
        else:
            out.append(Check(f"folder {f.local}", True, f"{f.mode} to {f.remote}"))
    return out


def _count_dirs(roots: list[Path], cap: int = DIR_COUNT_CAP) -> int:
    count = 0
    for root in roots:
        for _dirpath, dirnames, _files in os.walk(root):
            count += 1
            if count >= cap:
                return count
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
    return count


def _inotify(
    config: AgentConfig,
    limit_file: Path = INOTIFY_WATCHES,
    counter: Callable[[list[Path]], int] = _count_dirs,
) -> Check:
    try:
        limit = int(limit_file.read_text().strip())
    except (OSError, ValueError):
        return Check("inotify", True, "not Linux, or the limit is unreadable; not checked")
    dirs = counter([f.local for f in config.folders if f.local.exists()])
    # The limit is shared with every other program of the user: keep a wide margin.
    ok = dirs * 2 <= limit
    return Check(
        "inotify",
        ok,
        f"{dirs} directories to watch, max_user_watches {limit}",
        None
        if ok
        else f"raise it: echo fs.inotify.max_user_watches={max(dirs * 4, 524288)} "
        "| sudo tee /etc/sysctl.d/60-dropline.conf && sudo sysctl --system",
    )


def _disk(paths: AgentPaths, config: AgentConfig) -> list[Check]:
    out = []
    seen: set[int] = set()
    for place in [paths.state, *(f.local for f in config.folders)]:
        existing = next((q for q in [place, *place.parents] if q.exists()), None)
        if existing is None:
            continue
        dev = existing.stat().st_dev
        if dev in seen:
            continue
        seen.add(dev)
        usage = shutil.disk_usage(existing)
        ok = usage.free >= MIN_FREE_BYTES
        out.append(
            Check(
                f"disk {existing}",
                ok,
                f"{usage.free / 1024**3:.1f} GiB free",
                None if ok else "free some space: downloads and the journal need room",
            )
        )
    return out


def _home_permissions(paths: AgentPaths) -> Check:
    if not paths.home.exists():
        return Check("permissions", True, f"{paths.home} not created yet")
    mode = paths.home.stat().st_mode
    if mode & (stat.S_IWGRP | stat.S_IWOTH):
        return Check(
            "permissions",
            False,
            f"{paths.home} is writable by other users",
            f"chmod go-w '{paths.home}'",
        )
    if paths.config.exists() and paths.config.stat().st_mode & stat.S_IWOTH:
        return Check(
            "permissions",
            False,
            f"{paths.config} is writable by other users",
            f"chmod 600 '{paths.config}'",
        )
    return Check("permissions", True, f"{paths.home} is private to you")
