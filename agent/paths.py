"""Where one agent keeps its config, journal, logs, lock, control socket and cache.

``--home DIR`` (or ``DROPLINE_AGENT_HOME``) puts everything under one directory so
several agents can run side by side; without it the platform's user directories
are used.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import platformdirs

HOME_ENV = "DROPLINE_AGENT_HOME"
APP_NAME = "dropline"

# sockaddr_un.sun_path is 108 bytes on Linux (104 on macOS) including the NUL.
_MAX_SOCKET_PATH = 100


@dataclass(frozen=True, slots=True)
class AgentPaths:
    home: Path  # the directory the agent owns (config lives here unless --config)
    config: Path
    state: Path  # journal and other engine state
    logs: Path
    socket: Path
    lock: Path
    cache: Path  # copies of earlier versions opened from the tray; never inside a sync folder

    @classmethod
    def resolve(
        cls, home: Path | str | None = None, config: Path | str | None = None
    ) -> AgentPaths:
        """Paths for ``home`` (argument, then ``DROPLINE_AGENT_HOME``, then platform dirs)."""
        chosen = home if home is not None else os.environ.get(HOME_ENV) or None
        if chosen is not None:
            root = Path(chosen).expanduser().absolute()
            paths = cls(
                home=root,
                config=root / "agent.toml",
                state=root / "state",
                logs=root / "logs",
                socket=_socket_path(root / "agent.sock", root),
                lock=root / "agent.lock",
                cache=root / "cache",
            )
        else:
            root = Path(platformdirs.user_config_dir(APP_NAME))
            state = Path(platformdirs.user_state_dir(APP_NAME))
            paths = cls(
                home=root,
                config=root / "agent.toml",
                state=state,
                logs=Path(platformdirs.user_log_dir(APP_NAME)),
                socket=_socket_path(_runtime_dir() / "agent.sock", root),
                lock=state / "agent.lock",
                cache=Path(platformdirs.user_cache_dir(APP_NAME)),
            )
        if config is not None:
            paths = replace(paths, config=Path(config).expanduser().absolute())
        return paths

    def ensure(self) -> None:
        """Create the agent's directories, readable by the user alone."""
        for d in (self.home, self.state, self.logs, self.socket.parent, self.lock.parent):
            d.mkdir(parents=True, exist_ok=True, mode=0o700)


def _runtime_dir() -> Path:
    # platformdirs warns when XDG_RUNTIME_DIR is unset (a cron job, a container) and
    # falls back to a per-user /tmp directory, which is what we want anyway.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Path(platformdirs.user_runtime_dir(APP_NAME))


def _socket_path(preferred: Path, home: Path) -> Path:
    """``preferred`` unless it is too long for a Unix socket address.

    A deep home gets a short, stable name in the runtime directory instead, derived
    from the home so the client finds the same path without any lookup.
    """
    if len(os.fsencode(preferred)) <= _MAX_SOCKET_PATH:
        return preferred
    digest = hashlib.sha256(os.fsencode(home)).hexdigest()[:16]
    short = _runtime_dir() / f"agent-{digest}.sock"
    if len(os.fsencode(short)) <= _MAX_SOCKET_PATH:
        return short
    return Path(tempfile.gettempdir()) / f"dropline-{os.getuid()}-{digest}.sock"
