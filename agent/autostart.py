"""Start the agent at login: a systemd user unit on Linux (launchd, Windows files: packaging/)."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

from dropline.agent.control.launch import agent_program
from dropline.agent.paths import HOME_ENV, AgentPaths

log = logging.getLogger(__name__)

UNIT_TEMPLATE = """\
# Written by 'dropline-agent autostart enable'; removed by 'autostart disable'.
[Unit]
Description=Dropline sync agent
Documentation=file://{docs}
After=network-online.target
Wants=network-online.target

[Service]
Type=notify
NotifyAccess=main
ExecStart={exec_start}
# Secrets never go in this file: for a machine without a keyring, put
# DROPLINE_API_KEY=... in this optional file with mode 0600.
EnvironmentFile=-%h/.config/dropline/agent.env
Restart=on-failure
RestartSec=5
# SIGTERM lets the agent finish its journal writes; allow it time.
TimeoutStopSec=30

[Install]
WantedBy=default.target
"""


def unit_name(paths: AgentPaths, home: Path | None) -> str:
    if home is None and not os.environ.get(HOME_ENV):
        return "dropline-agent.service"
    digest = hashlib.sha256(os.fsencode(paths.home)).hexdigest()[:8]
    return f"dropline-agent-{digest}.service"


def unit_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "systemd" / "user"


def unit_path(paths: AgentPaths, home: Path | None = None) -> Path:
    return unit_dir() / unit_name(paths, home if home is not None else _home_arg())


def _home_arg() -> Path | None:
    env = os.environ.get(HOME_ENV)
    return Path(env) if env else None


def render_unit(paths: AgentPaths, home: Path | None, config: Path | None) -> str:
    args = [*agent_program(), "run"]
    if home is not None or os.environ.get(HOME_ENV):
        args += ["--home", str(paths.home)]
    if config is not None:
        args += ["--config", str(paths.config)]
    exec_start = " ".join(_quote(a) for a in args)
    docs = Path(__file__).resolve().parent.parent / "docs" / "deployment.md"
    return UNIT_TEMPLATE.format(exec_start=exec_start, docs=docs)


def _quote(arg: str) -> str:
    # systemd's own quoting: double quotes, with backslash and quote escaped.
    if arg and all(c.isalnum() or c in "/._-+=:@" for c in arg):
        return arg
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _systemctl(*args: str) -> bool:
    exe = shutil.which("systemctl")
    if exe is None:
        return False
    result = subprocess.run([exe, "--user", *args], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        log.info("systemctl --user %s: %s", " ".join(args), result.stderr.strip())
    return result.returncode == 0


def enable(paths: AgentPaths, home: Path | None, config: Path | None) -> Path:
    """Write the unit and enable it (``systemctl --user enable --now`` when systemd is there)."""
    if sys.platform != "linux":
        raise OSError(
            "autostart manages systemd units; on macOS and Windows use the files in packaging/"
        )
    home = home if home is not None else _home_arg()
    path = unit_dir() / unit_name(paths, home)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_unit(paths, home, config), encoding="utf-8")
    if _systemctl("daemon-reload"):
        _systemctl("enable", "--now", path.name)
    return path


def disable(paths: AgentPaths, home: Path | None = None) -> Path | None:
    path = unit_path(paths, home)
    if not path.exists():
        return None
    _systemctl("disable", "--now", path.name)
    path.unlink()
    _systemctl("daemon-reload")
    return path
