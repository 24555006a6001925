"""Seeded workloads: mixed trees of many small files and a few large ones, each file's
content unique, written to disk and remembered by path and SHA-256."""

from __future__ import annotations

import hashlib
import os
import random
from dataclasses import dataclass, field
from pathlib import Path

from dropline.sync.types import EngineSettings

MiB = 1024 * 1024
TUS_ABOVE = 1024 * 1024  # bigger files take the tus path; smaller ones go up in batches
# The agent's upload chunk: a file up to this size goes up in its creation POST, a bigger
# one in PATCHes of this size after it. Scenarios aiming at a PATCH need files above it.
CHUNK = EngineSettings().chunk_size
LARGE = CHUNK + CHUNK // 2  # two PATCHes: a whole chunk, then about half of one


def tus_requests(size: int) -> int:
    """The requests of one file's tus upload: the POST, then a PATCH a chunk."""
    return 1 if size <= CHUNK else 1 + -(-size // CHUNK)


@dataclass(frozen=True, slots=True)
class Shape:
    small: int  # how many small files (up to 16 KiB each)
    large: int  # how many large ones
    large_size: int  # bytes of each large file (give or take 10%)
    folders: int = 8


@dataclass
class Tree:
    """What a trial wrote: relative path ("/a/b.txt") -> SHA-256, plus sizes."""

    files: dict[str, str] = field(default_factory=dict)
    sizes: dict[str, int] = field(default_factory=dict)

    @property
    def total_bytes(self) -> int:
        return sum(self.sizes.values())

    @property
    def tus_bytes(self) -> int:
        return sum(s for s in self.sizes.values() if s > TUS_ABOVE)

    def folders(self) -> set[str]:
        out: set[str] = set()
        for path in self.files:
            parts = path.strip("/").split("/")[:-1]
            for i in range(1, len(parts) + 1):
                out.add("/" + "/".join(parts[:i]))
        return out

    def expected(self) -> dict[str, str | None]:
        """Paths with their SHA-256 and folders with None, as the tree helpers list them."""
        found: dict[str, str | None] = dict.fromkeys(self.folders())
        found.update(self.files)
        return found

    def add(self, path: str, data: bytes) -> None:
        self.files[path] = hashlib.sha256(data).hexdigest()
        self.sizes[path] = len(data)


def content(rng: random.Random, path: str, size: int) -> bytes:
    head = f"{path} {rng.getrandbits(64):016x}\n".encode()
    return head + rng.randbytes(max(0, size - len(head)))


def plan(rng: random.Random, shape: Shape) -> dict[str, bytes]:
    """The files of a mixed tree: small ones spread over folders, large ones at the top."""
    folders = [f"/d{i:02d}" for i in range(shape.folders)]
    folders += [f"{folders[i]}/sub" for i in range(0, len(folders), 3)]
    files: dict[str, bytes] = {}
    for i in range(shape.small):
        path = f"{rng.choice(folders)}/f{i:05d}.txt"
        files[path] = content(rng, path, rng.randint(1, 16 * 1024))
    for i in range(shape.large):
        size = int(shape.large_size * rng.uniform(0.9, 1.1))
        files[f"/big-{i}.bin"] = content(rng, f"/big-{i}.bin", size)
    return files


def write(root: Path, files: dict[str, bytes], tree: Tree | None = None) -> Tree:
    """Write ``files`` under ``root`` (each written whole, then closed) and record them."""
    tree = tree or Tree()
    for path, data in files.items():
        target = root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        with target.open("wb") as fh:
            fh.write(data)
        tree.add(path, data)
    return tree


def sha_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(4 * MiB):
            digest.update(block)
    return digest.hexdigest()


def local_files(root: Path) -> dict[str, str]:
    """Every file under ``root`` but the engine's own ``.dropline`` folder, with its hash."""
    out: dict[str, str] = {}
    for folder, dirs, names in os.walk(root):
        if Path(folder) == root and ".dropline" in dirs:
            dirs.remove(".dropline")
        for name in names:
            path = Path(folder) / name
            out["/" + path.relative_to(root).as_posix()] = sha_of(path)
    return out
