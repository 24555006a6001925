"""``dropline-agent doctor``: checks the setup and says how to fix each problem found.

Each failure is one :class:`Check` whose detail and fix fit on one line; a check that
breaks in an unexpected way is reported as a failure too, never as a traceback.
"""

from __future__ import annotations

import email.utils
import os
import shutil
import socket
import ssl
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from dropline.agent.config import AgentConfig, ConfigError, default_policy_path, load
from dropline.agent.control.client import AgentNotRunning, ControlClient
from dropline.agent.control.protocol import ControlError
from dropline.agent.credentials import API_KEY_ENV, Credential, CredentialStore
from dropline.agent.paths import AgentPaths

MAX_SKEW = 60.0  # seconds; access tokens are checked against their issue and expiry times
MIN_FREE_BYTES = 1024**3
INOTIFY_WATCHES = Path("/proc/sys/fs/inotify/max_user_watches")
DIR_COUNT_CAP = 200_000  # stop counting directories here; enough to judge the limit
NO_CREDENTIAL_FIX = (
    "sign in from the tray or with 'dropline-agent login --device'; on an unattended "
    "machine put DROPLINE_API_KEY in the agent's service environment (a systemd drop-in, "
    "see docs/deployment.md)"
)
NETWORK_FIX = "check server_url, the network, proxies and firewalls"


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "ok": self.ok, "detail": self.detail, "fix": self.fix}

    def line(self) -> str:
        """The check as one line: ``[FAIL] name: what is wrong; fix: what to do``."""
        text = f"[{'ok  ' if self.ok else 'FAIL'}] {self.name}: {self.detail}"
        if not self.ok and self.fix:
            text += f"; fix: {self.fix}"
        return " ".join(text.split())  # a TOML error may span lines; the report may not


def run_checks(paths: AgentPaths, transport: httpx.BaseTransport | None = None) -> list[Check]:
    checks: list[Check] = []
    try:
        config = load(paths.config)
    except ConfigError as exc:
        checks.append(_config_failure(exc))
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
    agent, status = _agent(paths)
    checks.append(agent)
    checks += _guarded("credentials", lambda: _credentials(config, status))
    if config.server_url:
        # A key the running agent already uses needs no second look from here.
        signed_in = status is not None and bool(status.get("signed_in"))
        cred = None if signed_in else _stored_key(config.server_url)
        checks += _guarded("server", lambda: _server(config, transport, cred))
    checks += _guarded("folders", lambda: _folders(config))
    checks += _guarded("inotify", lambda: [_inotify(config)])
    checks += _guarded("disk", lambda: _disk(paths, config))
    checks += _guarded("permissions", lambda: [_home_permissions(paths)])
    return checks


def _guarded(name: str, run: Callable[[], list[Check]]) -> list[Check]:
    """The checks ``run`` makes; an unexpected error is a failed check, not a traceback."""
    try:
        return run()
    except Exception as exc:
        return [
            Check(
                name,
                False,
                f"could not be checked ({type(exc).__name__}: {exc})",
                "run 'dropline-agent run --verbose' and send its log to your IT team",
            )
        ]


def _config_failure(exc: ConfigError) -> Check:
    where = f"{exc.key} in {exc.file}" if exc.key else exc.file
    if exc.file != str(default_policy_path()):
        return Check(
            "config", False, str(exc), f"edit {exc.file} and fix {exc.key or 'the syntax'}"
        )
    if "cannot be read" in exc.problem:
        fix = f"make it readable by every user: sudo chmod 644 '{exc.file}'"
    else:
        fix = (
            f"the policy file is your administrator's: they fix {where} "
            "('dropline-agent policy install --from FILE' checks a file before installing it)"
        )
    return Check("policy", False, str(exc), fix)


def _agent(paths: AgentPaths) -> tuple[Check, dict[str, Any] | None]:
    """Whether the agent answers, and its status when it does."""
    try:
        with ControlClient(paths.socket, timeout=5) as c:
            status: dict[str, Any] = c.call("status")
        return Check("agent", True, f"running, {status['state']}"), status
    except AgentNotRunning:
        return (
            Check(
                "agent",
                False,
                "not running",
                "start it: dropline-agent run (or: dropline-agent autostart enable)",
            ),
            None,
        )
    except (ControlError, OSError) as exc:
        return Check("agent", False, f"not answering: {exc}", "restart the agent"), None


def _credentials(config: AgentConfig, agent: dict[str, Any] | None) -> list[Check]:
    if not config.server_url:
        return [
            Check(
                "server_url",
                False,
                "no server_url is set",
                'add server_url = "https://..." to agent.toml',
            )
        ]
    # The running agent knows best: its credential may come from its service's
    # environment, which a shell running doctor does not have.
    if agent is not None and agent.get("signed_in"):
        who = f" as {agent['account']}" if agent.get("account") else ""
        return [Check("credentials", True, f"the running agent is signed in{who}")]
    store = CredentialStore(config.server_url)
    keyring = store.status()
    out: list[Check] = []
    if agent is not None:
        out.append(
            Check(
                "credentials",
                False,
                "the running agent is signed out: it has no credential, or the server "
                "refused the one it had",
                NO_CREDENTIAL_FIX,
            )
        )
    elif os.environ.get(API_KEY_ENV):
        return [Check("credentials", True, f"API key from {API_KEY_ENV}")]
    if not keyring.usable:
        out.append(
            Check("keyring", False, f"no usable keyring ({keyring.backend})", keyring.problem)
        )
        return out
    out.append(Check("keyring", True, keyring.backend))
    if agent is None:
        cred = store.load()
        if cred is None:
            out.append(
                Check("credentials", False, "no credential: not signed in", NO_CREDENTIAL_FIX)
            )
        else:
            kind = "API key" if cred.kind == "api_key" else "OAuth sign-in"
            out.append(Check("credentials", True, f"{kind} in the keyring"))
    return out


def _stored_key(url: str) -> Credential | None:
    """The API key the agent would use (an OAuth refresh token is not tried: it rotates)."""
    cred = CredentialStore(url).load()
    return cred if cred is not None and cred.kind == "api_key" else None


def _causes(exc: BaseException) -> list[BaseException]:
    """``exc`` and what it was raised from, outermost first (httpx wraps the OS error)."""
    chain: list[BaseException] = []
    found: BaseException | None = exc
    while found is not None and found not in chain:
        chain.append(found)
        found = found.__cause__ or found.__context__
    return chain


def _unreachable(url: str, exc: httpx.HTTPError) -> Check:
    chain = _causes(exc)
    verify = next((c for c in chain if isinstance(c, ssl.SSLCertVerificationError)), None)
    if verify is not None or "CERTIFICATE_VERIFY_FAILED" in str(exc):
        reason = getattr(verify, "verify_message", None) or verify or exc
        return Check(
            "tls",
            False,
            f"the certificate of {url} is not trusted ({reason})",
            "install your organisation's CA certificate in the system store "
            "(or set SSL_CERT_FILE for the agent)",
        )
    tls = next((c for c in chain if isinstance(c, ssl.SSLError)), None)
    if tls is not None:
        return Check(
            "tls",
            False,
            f"no TLS connection to {url} ({tls.reason or tls})",
            "check that the server speaks HTTPS (TLS 1.2 or newer) at that address and port",
        )
    if isinstance(exc, httpx.TimeoutException):
        return Check("server", False, f"{url} did not answer within 10 s", NETWORK_FIX)
    if any(isinstance(c, socket.gaierror) for c in chain):
        host = httpx.URL(url).host
        return Check("server", False, f"cannot connect to {url} ({host} is not found)", NETWORK_FIX)
    if any(isinstance(c, ConnectionRefusedError) for c in chain):
        return Check(
            "server",
            False,
            f"cannot connect to {url} (connection refused: nothing listens there)",
            NETWORK_FIX,
        )
    oserror = next((c for c in chain if isinstance(c, OSError) and c.strerror), None)
    reason = oserror.strerror if isinstance(oserror, OSError) else type(exc).__name__
    return Check("server", False, f"cannot connect to {url} ({reason})", NETWORK_FIX)


def _key_accepted(http: httpx.Client, url: str, cred: Credential) -> Check:
    where = API_KEY_ENV if cred.source == "env" else "the keyring"
    resp = http.get(f"{url}/api/v1/me", headers={"Authorization": f"Bearer {cred.secret}"})
    if resp.status_code in (401, 403):
        return Check(
            "api key",
            False,
            f"the server refused the API key from {where} (HTTP {resp.status_code}: "
            "expired, revoked, or made for another server)",
            "ask your Dropline administrator for a new key (dropline-server api-keys create) "
            "and replace the old one where it is kept",
        )
    if resp.status_code != 200:
        return Check("api key", True, f"not checked: /api/v1/me answered HTTP {resp.status_code}")
    try:
        user = resp.json().get("user") or {}
    except (ValueError, AttributeError):
        user = {}
    who = f" for {user['email']}" if isinstance(user, dict) and user.get("email") else ""
    return Check("api key", True, f"the server accepts the API key from {where}{who}")


def _server(
    config: AgentConfig, transport: httpx.BaseTransport | None, cred: Credential | None = None
) -> list[Check]:
    url = config.server_url or ""
    key_check: Check | None = None
    try:
        with httpx.Client(timeout=10.0, transport=transport) as http:
            before = time.time()
            resp = http.get(f"{url}/healthz")
            after = time.time()
            if cred is not None and resp.status_code == 200:
                key_check = _key_accepted(http, url, cred)
    except httpx.HTTPError as exc:
        return [_unreachable(url, exc)]
    if resp.status_code == 404:
        server = Check(
            "server",
            False,
            f"{url} answered HTTP 404 for /healthz: not a Dropline server, or a path in the URL",
            "set server_url to the server's address alone, such as https://mft.example.com",
        )
    else:
        server = Check(
            "server",
            resp.status_code < 500,
            f"{url} answered HTTP {resp.status_code}",
            None if resp.status_code < 500 else "the server has a problem; ask its operators",
        )
    out = [server]
    if key_check is not None:
        out.append(key_check)
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
        elif not f.local.is_dir():
            out.append(
                Check(
                    f"folder {f.local}",
                    False,
                    "is a file, not a folder",
                    f"move the file away, then: mkdir -p '{f.local}'",
                )
            )
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
