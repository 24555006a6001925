"""The uvicorn server Dropline runs under: ends long-polls when shutdown begins.

uvicorn waits for in-flight requests before it stops; a long-poll would hold a
SIGTERM (or a test's teardown) for up to its whole timeout, so the change
notifier is closed first and every waiting long-poll answers at once.
"""

from __future__ import annotations

import socket

import uvicorn

from dropline.server.files.changes import ChangeNotifier


class DroplineServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, notifier: ChangeNotifier) -> None:
        super().__init__(config)
        self.notifier = notifier

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self.notifier.close()
        await super().shutdown(sockets)
