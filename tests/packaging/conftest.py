"""The packages under test: built by ``make package`` (``make test`` runs it first), or
here when they are missing or older than their sources."""

from __future__ import annotations

from pathlib import Path

import pytest

from tools.package import ensure_built


@pytest.fixture(scope="session")
def dist() -> Path:
    """``dist/`` with the bundles and the .deb files, up to date."""
    return ensure_built()
