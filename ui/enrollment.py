"""The first sign-in, unattended: when the agent has a server and folders but no credential,
the tray says "Sign in to Dropline" once per run. With the policy's ``enrollment =
"device"`` the device flow is started first, so the notice carries the code and the link.
"""

from __future__ import annotations

from typing import Any

from dropline.ui.notifications import Level, Notice

TITLE = "Sign in to Dropline"
DEVICE = "device"  # the policy's enrollment value that starts the device flow at once


def waiting_for_credential(status: dict[str, Any] | None, signin: dict[str, Any]) -> bool:
    """The agent is set up to sync (a server, folders) and waits for a first credential."""
    if not status or status.get("signed_in"):
        return False
    return (
        status.get("state") == "signed_out"
        and bool(status.get("server_url"))
        and bool(status.get("folders"))
        and signin.get("state") == "signed_out"  # no sign-in under way, none failed
    )


def prompt(signin: dict[str, Any]) -> Notice:
    """The notice: with a device code when the flow is pending, else an invitation."""
    code, url = signin.get("user_code"), signin.get("url")
    if signin.get("state") == "pending" and code and url:
        body = f"On any device, open {url}\nand enter the code {code}"
    else:
        body = "Your folders are ready to sync once you sign in. Click here to sign in."
    return Notice(TITLE, body, Level.INFO, opens="signin")
