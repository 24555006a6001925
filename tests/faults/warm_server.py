"""``python -m tests.faults.warm_server``: ``dropline-server serve`` kept warm on standby.

It imports the server's code, says ``ready`` on stdout, and waits; the line it then
reads on stdin is the ``serve`` command line, which it runs through the server's own
``main``, in this process. A restart after a kill -9 then takes the server's start-up
(opening the database, binding the port) and not the interpreter's imports, so a trial
measures how the agents ride out a server that died and came back, not Python loading.
"""

from __future__ import annotations

import shlex
import sys

import dropline.server.http.app  # noqa: F401  (imported now, so serving later is quick)
from dropline.server.cli import main


def standby() -> int:
    print("ready", flush=True)
    line = sys.stdin.readline()
    if not line.strip():
        return 0  # told to go away without serving
    return main(shlex.split(line))


if __name__ == "__main__":
    sys.exit(standby())
