"""The control socket: protocol v1 messages, the agent's server, and clients for the tray and CLI.

The tray may import this package (clients, protocol, launcher) and nothing else of
``agent``; none of it imports the engine.
"""

from __future__ import annotations

from dropline.agent.control.client import (
    AgentNotRunning,
    AsyncControlClient,
    ConnectionLost,
    ControlClient,
    Event,
    Subscription,
)
from dropline.agent.control.launch import LaunchFailed, agent_command, start_agent
from dropline.agent.control.protocol import (
    LOCKED_MESSAGE,
    PROTOCOL_VERSION,
    ControlError,
)

__all__ = [
    "LOCKED_MESSAGE",
    "PROTOCOL_VERSION",
    "AgentNotRunning",
    "AsyncControlClient",
    "ConnectionLost",
    "ControlClient",
    "ControlError",
    "Event",
    "LaunchFailed",
    "Subscription",
    "agent_command",
    "start_agent",
]
