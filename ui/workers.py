"""Everything that talks to the agent, kept off the UI thread.

``AgentLink`` is what the windows use: ``call()`` queues a request for a worker
thread that owns the blocking control client, and answers come back as callbacks
on the UI thread. A second worker holds the event subscription, reconnecting
with backoff (and starting the agent, when allowed) whenever it drops; the link
reports "connecting" meanwhile. Nothing here polls on a timer.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import random
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from PySide6.QtCore import QObject, QThread, Signal, Slot

from dropline.agent.control import (
    AgentNotRunning,
    ControlClient,
    ControlError,
    LaunchFailed,
    Subscription,
    start_agent,
)
from dropline.agent.paths import AgentPaths

log = logging.getLogger(__name__)

OnDone = Callable[[dict[str, Any]], None]
OnError = Callable[[ControlError], None]


class AgentCall(Protocol):
    """What windows that ask the agent themselves are given: ``AgentLink.call``'s shape."""

    def __call__(
        self,
        op: str,
        args: dict[str, Any] | None = None,
        on_done: OnDone | None = None,
        on_error: OnError | None = None,
    ) -> None: ...


@dataclass(frozen=True, slots=True)
class LinkOptions:
    home: Path | None = None
    config: Path | None = None
    start_agent: bool = True  # start the agent when nothing answers at its socket
    agent_env: dict[str, str] | None = None  # environment for an agent the tray starts
    first_delay: float = 0.25  # reconnect backoff: first wait, doubling up to max_delay
    max_delay: float = 8.0
    request_timeout: float = 30.0


def backoff_delays(first: float, most: float, rng: random.Random | None = None) -> Any:
    """Waits between reconnect attempts: doubling, capped, with jitter so many trays spread out."""
    rng = rng or random.Random()
    delay = first
    while True:
        yield delay * (0.8 + 0.4 * rng.random())
        delay = min(most, delay * 2)


class _RequestWorker(QObject):
    """Runs requests one after another on its thread with one blocking client."""

    answered = Signal(int, object)  # token, result dict
    refused = Signal(int, object)  # token, ControlError

    def __init__(self, socket_path: Path, timeout: float) -> None:
        super().__init__()
        self._client = ControlClient(socket_path, timeout=timeout)

    @Slot(int, str, object)
    def run(self, token: int, op: str, args: object) -> None:
        try:
            result = self._client.call(op, args if isinstance(args, dict) else None)
        except ControlError as exc:
            self.refused.emit(token, exc)
        except Exception as exc:  # the UI must get an answer for every request
            log.exception("control request %s failed", op)
            self.refused.emit(token, ControlError("internal", f"unexpected error: {exc}"))
        else:
            self.answered.emit(token, result)

    @Slot()
    def close(self) -> None:
        self._client.close()


class _EventWorker(QObject):
    """Holds the subscription: connects, forwards events, reconnects when it drops."""

    connected = Signal(object)  # status snapshot
    disconnected = Signal(str)  # why, in words
    agentEvent = Signal(str, object)  # name, data
    agentStarted = Signal(int)  # pid of an agent this tray launched
    launchFailed = Signal(str)

    def __init__(self, options: LinkOptions, socket_path: Path) -> None:
        super().__init__()
        self._options = options
        self._socket = socket_path
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._subscription: Subscription | None = None
        self._wake = threading.Event()

    @Slot()
    def run(self) -> None:
        delays = backoff_delays(self._options.first_delay, self._options.max_delay)
        launched = False
        while not self._stop.is_set():
            try:
                subscription = Subscription.open(self._socket, None, self._options.request_timeout)
            except AgentNotRunning:
                if self._options.start_agent and not launched:
                    launched = True  # once per outage: a crashing agent is not restarted in a loop
                    self._launch()
                    continue
                reason = "The Dropline service is not running."
            except (ControlError, OSError) as exc:
                reason = f"Could not reach the Dropline service: {exc}"
            else:
                with self._lock:
                    if self._stop.is_set():
                        subscription.close()
                        return
                    self._subscription = subscription
                delays = backoff_delays(self._options.first_delay, self._options.max_delay)
                launched = False
                self.connected.emit(subscription.snapshot)
                try:
                    for ev in subscription:
                        self.agentEvent.emit(ev.name, ev.data)
                except ControlError as exc:
                    log.warning("event stream broke: %s", exc)
                with self._lock:
                    self._subscription = None
                subscription.close()
                if self._stop.is_set():
                    return
                reason = "The Dropline service stopped answering."
            log.info("agent link down: %s", reason)
            self.disconnected.emit(reason)
            self._wake.wait(next(delays))
            self._wake.clear()

    def _launch(self) -> None:
        try:
            pid = start_agent(self._options.home, self._options.config, env=self._options.agent_env)
        except LaunchFailed as exc:
            log.warning("could not start the agent: %s", exc.message)
            self.launchFailed.emit(exc.message)
        else:
            log.info("started the agent (pid %s)", pid)
            self.agentStarted.emit(pid)

    def retry_now(self) -> None:
        """Skip the rest of the current backoff wait (callable from any thread)."""
        self._wake.set()

    def stop(self) -> None:
        """End the loop (callable from any thread); unblocks a waiting read."""
        self._stop.set()
        self._wake.set()
        with self._lock:
            if self._subscription is not None:
                self._subscription.close()


class AgentLink(QObject):
    """The tray's one connection to the agent: requests, events and connection state."""

    connected = Signal(object)  # status snapshot after (re)subscribing
    disconnected = Signal(str)
    agentEvent = Signal(str, object)  # name, data
    agentStarted = Signal(int)
    launchFailed = Signal(str)
    _submit = Signal(int, str, object)
    _close_client = Signal()

    def __init__(self, options: LinkOptions | None = None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.options = options or LinkOptions()
        self.socket_path = AgentPaths.resolve(self.options.home, self.options.config).socket
        self.is_connected = False
        self.started_pid: int | None = None  # set when this tray launched the agent
        self._tokens = itertools.count(1)
        self._callbacks: dict[int, tuple[OnDone | None, OnError | None]] = {}

        self._request_thread = QThread(self)
        self._request_thread.setObjectName("dropline-requests")
        self._requests = _RequestWorker(self.socket_path, self.options.request_timeout)
        self._requests.moveToThread(self._request_thread)
        self._submit.connect(self._requests.run)
        self._close_client.connect(self._requests.close)
        self._requests.answered.connect(self._on_answered)
        self._requests.refused.connect(self._on_refused)

        self._event_thread = QThread(self)
        self._event_thread.setObjectName("dropline-events")
        self._events = _EventWorker(self.options, self.socket_path)
        self._events.moveToThread(self._event_thread)
        self._event_thread.started.connect(self._events.run)
        self._events.connected.connect(self._on_connected)
        self._events.disconnected.connect(self._on_disconnected)
        self._events.agentEvent.connect(self.agentEvent)
        self._events.agentStarted.connect(self._on_agent_started)
        self._events.launchFailed.connect(self.launchFailed)

    def start(self) -> None:
        self._request_thread.start()
        self._event_thread.start()

    def stop(self, stop_started_agent: bool = True) -> None:
        """Close the connection; an agent this tray launched is stopped too.

        An agent that was already running (a service) keeps running.
        """
        self._events.stop()
        self._event_thread.quit()
        self._event_thread.wait(10_000)
        self._close_client.emit()
        self._request_thread.quit()
        self._request_thread.wait(10_000)
        if stop_started_agent and self.started_pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.started_pid, signal.SIGTERM)
            self.started_pid = None

    def reconnect_now(self) -> None:
        self._events.retry_now()

    def call(
        self,
        op: str,
        args: dict[str, Any] | None = None,
        on_done: OnDone | None = None,
        on_error: OnError | None = None,
    ) -> None:
        """Send ``op`` from the worker thread; the callbacks run later on this (UI) thread."""
        token = next(self._tokens)
        self._callbacks[token] = (on_done, on_error)
        self._submit.emit(token, op, args)

    @Slot(int, object)
    def _on_answered(self, token: int, result: object) -> None:
        on_done, _ = self._callbacks.pop(token, (None, None))
        if on_done is not None:
            on_done(result if isinstance(result, dict) else {})

    @Slot(int, object)
    def _on_refused(self, token: int, error: object) -> None:
        _, on_error = self._callbacks.pop(token, (None, None))
        assert isinstance(error, ControlError)
        if on_error is not None:
            on_error(error)
        else:
            log.warning("agent refused a request: %s (%s)", error.message, error.code)

    @Slot(object)
    def _on_connected(self, snapshot: object) -> None:
        self.is_connected = True
        self.connected.emit(snapshot)

    @Slot(str)
    def _on_disconnected(self, reason: str) -> None:
        self.is_connected = False
        self.disconnected.emit(reason)

    @Slot(int)
    def _on_agent_started(self, pid: int) -> None:
        self.started_pid = pid
        self.agentStarted.emit(pid)
