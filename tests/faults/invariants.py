"""The invariants every trial ends with, each check adding what it found to a Findings.

Converged: every file that was written whole is on the server with its SHA-256 (read
from the listing, and for a sample by downloading and hashing) and in every agent's
folder, and nothing else is (nothing the user did not delete is gone, nothing comes
back). At any moment: no visible file holds anything but a whole version that was
written (never a partial or unverified one). Afterwards: the agents' journals and the
server's database pass SQLite's integrity check, every revision's blob is there with
its hash, and no completed upload left its staging file behind.

Then the sweeper runs (``dropline-server sweep --grace 0``, as an operator would, beside
the running server, once nothing is in flight): afterwards no blob that no revision
refers to (a kill between storing a blob and committing its revision) and no batch
staging is left, and every revision's blob is still there with its hash. The sweeper
never removes live data.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import sqlite3
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from dropline.sdk.client import DroplineClient
from dropline.sdk.errors import NotFoundError
from dropline.server.storage.encryption import MAGIC as SEALED
from tests.faults.trees import Tree, local_files, sha_of
from tests.sync.engine_helpers import remote_tree


@dataclass
class Findings:
    problems: list[str] = field(default_factory=list)
    files_checked: int = 0
    lost: int = 0  # files lost or corrupted
    orphan_blobs: int = 0
    leftover_batches: int = 0
    swept: int = 0  # what the sweeper removed: orphan blobs, staging, ended links

    def fail(self, text: str, lost: int = 0) -> None:
        self.problems.append(text)
        self.lost += lost


async def remote_files(sdk: DroplineClient, top: str) -> dict[str, str | None]:
    """The server's tree under ``top``, paths relative to it ("/a/b.txt"); empty while
    ``top`` itself is not there yet."""
    try:
        found = await remote_tree(sdk, top)
    except NotFoundError:
        return {}
    return {path[len(top) :]: sha for path, sha in found.items()}


def compare(findings: Findings, where: str, expected: Tree, got: dict[str, str | None]) -> None:
    """``got`` (a listing, files and folders) holds exactly the expected files."""
    want = expected.expected()
    for path, sha in expected.files.items():
        if path not in got:
            findings.fail(f"{where}: {path} is missing", lost=1)
        elif got[path] != sha:
            findings.fail(f"{where}: {path} has SHA-256 {got[path]}, not {sha}", lost=1)
    extra = sorted(p for p in got if p not in want)
    if extra:
        findings.fail(f"{where}: {len(extra)} unexpected entries, such as {extra[:3]}")
    findings.files_checked += len(expected.files)


async def converged(
    findings: Findings, sdk: DroplineClient, top: str, expected: Tree, roots: list[Path]
) -> None:
    compare(findings, "server", expected, await remote_files(sdk, top))
    for root in roots:
        local: dict[str, str | None] = dict.fromkeys(_local_folders(root))
        local.update(local_files(root))
        compare(findings, str(root), expected, local)
        partial = root / ".dropline" / "partial"
        if partial.is_dir() and any(partial.iterdir()):
            findings.fail(f"{root}: partial downloads left in {partial}")


def _local_folders(root: Path) -> list[str]:
    return [
        "/" + p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.is_dir() and ".dropline" not in p.relative_to(root).parts
    ]


async def downloads_match(
    findings: Findings, sdk: DroplineClient, top: str, expected: Tree, rng: random.Random
) -> None:
    """Download the large files and a sample of the small ones; hash what arrives."""
    small = sorted(p for p, s in expected.sizes.items() if s <= 1024 * 1024)
    chosen = [p for p, s in expected.sizes.items() if s > 1024 * 1024]
    chosen += rng.sample(small, min(5, len(small)))
    for path in chosen:
        entry = await sdk.metadata(top + path)
        digest = hashlib.sha256()
        async with sdk.open_content(entry.id) as stream:
            async for block in stream.chunks():
                digest.update(block)
        if digest.hexdigest() != expected.files[path]:
            findings.fail(f"server: the bytes of {path} do not hash to its SHA-256", lost=1)


def only_whole_versions(
    findings: Findings, where: str, seen: dict[str, str | None], versions: set[str]
) -> None:
    """At any moment (say, just after a kill): each visible file is a whole version."""
    for path, sha in seen.items():
        if sha is not None and sha not in versions:
            findings.fail(f"{where}: {path} holds bytes that were never written whole", lost=1)


def local_snapshot(root: Path) -> dict[str, str | None]:
    return dict(local_files(root))


def _sealed(blob: Path) -> bool:
    """An encrypted blob (a tenant with encryption at rest): its plain hash is checked by
    downloading instead."""
    with blob.open("rb") as fh:
        return fh.read(len(SEALED)) == SEALED


def sqlite_ok(findings: Findings, db: Path) -> None:
    if not db.exists():
        findings.fail(f"{db} is missing")
        return
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        result = conn.execute("PRAGMA integrity_check").fetchall()
    finally:
        conn.close()
    if result != [("ok",)]:
        findings.fail(f"{db}: integrity_check says {result[:3]}")


def server_storage(findings: Findings, data: Path, since: float) -> None:
    """The database passes its check; each revision's blob exists (and, for revisions
    made since ``since``, hashes to it); completed uploads left no staging behind."""
    db = data / "dropline.db"
    sqlite_ok(findings, db)
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        revisions = conn.execute("SELECT blob_id, sha256, created_at FROM revisions").fetchall()
        live = {
            row[0] for row in conn.execute("SELECT blob_id FROM entries WHERE blob_id IS NOT NULL")
        }
        done = [row[0] for row in conn.execute("SELECT id FROM uploads WHERE entry_id IS NOT NULL")]
    finally:
        conn.close()
    blobs = {p.name: p for p in (data / "blobs").glob("*/*") if not p.name.endswith(".tmp")}
    referenced = {blob for blob, _sha, _at in revisions} | live
    for blob, sha, at in revisions:
        path = blobs.get(blob)
        if path is None:
            findings.fail(f"server: the blob of a revision ({blob}) is missing", lost=1)
        elif at >= since and not _sealed(path) and sha_of(path) != sha:
            findings.fail(f"server: blob {blob} does not hash to its revision's SHA-256", lost=1)
    for blob in live - {blob for blob, _s, _a in revisions}:
        if blob not in blobs:
            findings.fail(f"server: the blob of a live entry ({blob}) is missing", lost=1)
    findings.orphan_blobs = len(set(blobs) - referenced)
    staged = [u for u in done if (data / "uploads" / f"{u}.part").exists()]
    if staged:
        findings.fail(f"server: {len(staged)} completed uploads left staging files")
    findings.leftover_batches = len(list((data / "uploads").glob("*.batch")))


def swept(findings: Findings, data: Path, env: Mapping[str, str], since: float) -> None:
    """Run the sweeper with no grace on the server's data (the server still running), then
    check that it left no orphan blob or batch staging and removed nothing live."""
    command = ["sweep", "--data-dir", str(data), "--grace", "0", "--json"]
    result = subprocess.run(
        [sys.executable, "-m", "dropline.server.cli", *command],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )
    if result.returncode != 0:
        findings.fail(f"server: the sweeper failed: {result.stderr.strip()[-300:]}")
        return
    findings.swept = len(json.loads(result.stdout)["items"])
    after = Findings()
    server_storage(after, data, since)
    for problem in after.problems:
        findings.fail(f"after the sweep: {problem}")
    findings.lost += after.lost
    if after.orphan_blobs or after.leftover_batches:
        findings.fail(
            f"after the sweep: {after.orphan_blobs} orphan blobs and "
            f"{after.leftover_batches} batch staging files are left"
        )
