"""The built .deb files installed on this machine for a test with ``apt-get``, and the
machine put back as it was afterwards, also when the test fails: the packages purged,
any dependency they pulled in removed, and the users and paths they left behind
(kept by design, like the server's data) deleted if they were not there before."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

APT = [
    "apt-get",
    "-y",
    "-q",
    # Another apt or dpkg may hold the lock for a while (a test elsewhere, an install).
    "-o",
    "DPkg::Lock::Timeout=300",
    "-o",
    "Dpkg::Use-Pty=0",
]
APT_ENV = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}


def apt(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [*APT, *args],
        capture_output=True,
        text=True,
        env=APT_ENV,
        cwd=cwd,
        timeout=600,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert done.returncode == 0, f"apt-get {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    return done


def dpkg_status() -> dict[str, str]:
    """Every package dpkg knows, with its status abbreviation (``ii``, ``rc``, ...)."""
    out = subprocess.run(
        ["dpkg-query", "-W", "-f", "${Package}\t${db:Status-Abbrev}\n"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    status = {}
    for line in out.splitlines():
        name, _, abbrev = line.partition("\t")
        if abbrev.strip() and not abbrev.startswith("un"):
            status[name] = abbrev.strip()
    return status


def package_files(package: str) -> list[Path]:
    """``dpkg -L``: every path the installed package owns (folders included)."""
    out = subprocess.run(["dpkg", "-L", package], capture_output=True, text=True, check=True)
    return [Path(line) for line in out.stdout.splitlines() if line.startswith("/")]


def conffiles(package: str) -> set[Path]:
    out = subprocess.run(
        ["dpkg-query", "-W", "-f", "${Conffiles}", package],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return {Path(line.split()[0]) for line in out.splitlines() if line.strip()}


def user_exists(name: str) -> bool:
    return subprocess.run(["getent", "passwd", name], capture_output=True).returncode == 0


def group_exists(name: str) -> bool:
    return subprocess.run(["getent", "group", name], capture_output=True).returncode == 0


@dataclass
class Installed:
    packages: tuple[str, ...]
    files: dict[str, list[Path]] = field(default_factory=dict)  # dpkg -L right after install
    conffiles: dict[str, set[Path]] = field(default_factory=dict)


@contextmanager
def installed(
    debs: list[Path], users: tuple[str, ...] = (), leftovers: tuple[Path, ...] = ()
) -> Iterator[Installed]:
    """``apt-get install ./X.deb`` for each of ``debs``; afterwards everything is undone.

    ``users`` (system users the packages create) and ``leftovers`` (paths a purge keeps
    on purpose) are removed at the end unless they existed before.
    """
    names = tuple(deb.name.split("_", 1)[0] for deb in debs)
    before = dpkg_status()
    assert not set(names) & before.keys(), (
        f"{', '.join(set(names) & before.keys())} already known to dpkg on this machine: "
        "purge it first, the test installs and purges its own build"
    )
    had_users = {u for u in users if user_exists(u)}
    had_groups = {u for u in users if group_exists(u)}
    had_paths = {p for p in leftovers if p.exists() or p.is_symlink()}
    state = Installed(names)
    try:
        cwd = debs[0].parent.parent
        apt("install", *(f"./{deb.relative_to(cwd)}" for deb in debs), cwd=cwd)
        for name in names:
            state.files[name] = package_files(name)
            state.conffiles[name] = conffiles(name)
        yield state
    finally:
        left = [n for n in dpkg_status() if n in names]
        if left:
            apt("purge", *left)
        pulled_in = sorted(set(dpkg_status()) - set(before))
        if pulled_in:
            apt("purge", *pulled_in)
        for user in users:
            if user not in had_users and user_exists(user):
                subprocess.run(["userdel", user], check=True)
            if user not in had_groups and group_exists(user):
                subprocess.run(["groupdel", user], check=True)
        for path in leftovers:
            if path not in had_paths:
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path)
                else:
                    path.unlink(missing_ok=True)
