"""Start the agent as a detached background process (for the tray) and wait until it answers."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from dropline.agent.control import protocol as p
from dropline.agent.control.client import AgentNotRunning, ControlClient
from dropline.agent.paths import AgentPaths


class LaunchFailed(p.ControlError):
    def __init__(self, message: str) -> None:
        super().__init__(p.UNAVAILABLE, message)


def agent_program() -> list[str]:
    """How to run ``dropline-agent`` from here: this interpreter, or, inside a bundle
    (where the executable is the bundle's own program), the agent beside it."""
    if getattr(sys, "frozen", False):
        return [str(Path(sys.executable).with_name("dropline-agent"))]
    return [sys.executable, "-m", "dropline.agent"]


def agent_command(home: Path | None = None, config: Path | None = None) -> list[str]:
    """The command line that runs the agent in the foreground."""
    cmd = [*agent_program(), "run"]
    if home is not None:
        cmd += ["--home", str(home)]
    if config is not None:
        cmd += ["--config", str(config)]
    return cmd


def start_agent(
    home: Path | None = None,
    config: Path | None = None,
    env: dict[str, str] | None = None,
    wait: float = 20.0,
) -> int:
    """Start ``dropline-agent run`` detached from the caller; return its PID once it answers.

    An agent already running for this home is left alone and its PID returned. The
    child's early output goes to ``launch.log`` in the agent's log directory, so a
    failure to start can be reported with its reason.
    """
    paths = AgentPaths.resolve(home, config)
    running = _running_pid(paths)
    if running is not None:
        return running
    paths.ensure()
    log_path = paths.logs / "launch.log"
    with open(log_path, "ab") as out:
        proc = subprocess.Popen(
            agent_command(home, config),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            start_new_session=True,  # survives the tray quitting; no terminal signals
            env=env if env is not None else dict(os.environ),
            close_fds=True,
        )
    # Reap the child whenever it exits, so a long-lived caller (the tray) never
    # collects zombies; the thread also keeps the Popen object alive until then.
    threading.Thread(target=proc.wait, name="dropline-agent-reaper", daemon=True).start()
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        code = proc.poll()
        if code is not None:
            # A second agent for the same home exits at once: report the first one.
            running = _running_pid(paths)
            if running is not None:
                return running
            raise LaunchFailed(f"the agent exited with status {code}; see {log_path}")
        pid = _running_pid(paths)
        if pid is not None:
            return pid
        time.sleep(0.05)
    raise LaunchFailed(f"the agent did not answer within {wait:.0f} s; see {log_path}")


def _running_pid(paths: AgentPaths) -> int | None:
    try:
        with ControlClient(paths.socket, timeout=2.0) as client:
            return int(client.hello()["pid"])
    except AgentNotRunning:
        return None
    except p.ControlError:
        return None
