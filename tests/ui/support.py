"""A real agent child process and a tray wired to it, for the tray's integration tests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pytestqt.qtbot import QtBot

from dropline.ui.controller import TrayApp
from dropline.ui.workers import AgentLink, LinkOptions
from tests.agent.support import AgentEnv

WAIT_MS = 60_000  # generous: two shared cores, and the agent is a separate process


class Opened:
    """Stands in for the desktop's "open": records what the tray asked to open."""

    def __init__(self) -> None:
        self.paths: list[Path] = []

    def __call__(self, path: Path) -> bool:
        self.paths.append(path)
        return True


def write_agent_config(env: AgentEnv, server_url: str, folders: dict[str, Path]) -> None:
    lines = [f'server_url = "{server_url}"', "concurrency = 2"]
    for remote, local in folders.items():
        local.mkdir(parents=True, exist_ok=True)
        lines += ["", "[[folders]]", f'local = "{local}"', f'remote = "{remote}"']
    env.write_config("\n".join(lines) + "\n")


@contextmanager
def tray_for(
    env: AgentEnv, qtbot: QtBot, start_agent: bool = False, opener: Opened | None = None
) -> Iterator[TrayApp]:
    """A tray app (icon hidden: offscreen has no tray) linked to ``env``'s agent."""
    link = AgentLink(
        LinkOptions(
            home=env.home,
            start_agent=start_agent,
            agent_env=env.env(),
            first_delay=0.05,
            max_delay=0.5,
            request_timeout=30,
        )
    )
    app = TrayApp(link, opener=opener or Opened(), show_tray=False)
    app.start()
    try:
        yield app
    finally:
        app.close_windows()
        link.stop(stop_started_agent=True)
        link.deleteLater()
