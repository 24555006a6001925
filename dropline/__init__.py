"""Dropline: managed file transfer with a desktop sync agent, a tray app, an MFT
server and its Python SDK.

One import name with a subpackage for each part: ``dropline.sdk`` (the API client
integrators use), ``dropline.sync`` (the engine), ``dropline.agent`` (the service
and its CLI), ``dropline.ui`` (the tray) and ``dropline.server``. In the source
tree each subpackage here is a link to the top-level folder of the same name.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("dropline")
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"
