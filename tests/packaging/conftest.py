"""The packages under test: built by ``make package`` (``make test`` runs it first), or
here when they are missing or older than their sources."""

from __future__ import annotations

import fcntl
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tools.package import ensure_built

BUILD_LOCK = Path(tempfile.gettempdir()) / "dropline-package-build.lock"
MACHINE_LOCK = Path(tempfile.gettempdir()) / "dropline-package-tests.lock"


@pytest.fixture(scope="session")
def dist() -> Path:
    """``dist/`` with the bundles and the .deb files, up to date."""
    with BUILD_LOCK.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one build at a time
        return ensure_built()


@pytest.fixture(scope="module", autouse=True)
def one_package_module_at_a_time() -> Iterator[None]:
    """These tests install .deb files on this machine and put it back as it was
    afterwards; two modules at once (``make test`` runs one per core) would purge what
    the other just installed. Each module holds the lock while it runs."""
    with MACHINE_LOCK.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield
