"""A real S3 endpoint for tests: moto's standalone server (``moto_server``) on 127.0.0.1,
a child process stopped by its PID, with a fresh bucket per test.

``moto_s3(tmp_path)`` starts a server of its own; the ``s3_env`` fixture shares one server
per test process (``shared_moto``) and makes a new bucket for each test. Both give the
environment a Dropline server needs to keep its blobs there: ``DROPLINE_BLOB_URL`` and the
standard AWS variables, which the server reads as any S3 tool does.
"""

from __future__ import annotations

import atexit
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

REGION = "us-east-1"
ACCESS_KEY = "dropline-test-access"
SECRET_KEY = "dropline-test-secret"  # moto accepts any; no real credential is involved


def _moto_server_command() -> list[str]:
    beside = Path(sys.executable).with_name("moto_server")
    found = str(beside) if beside.exists() else shutil.which("moto_server")
    if found is None:
        raise RuntimeError("moto_server is not installed (pip install 'moto[server]')")
    return [found, "-H", "127.0.0.1", "-p", "0"]


class MotoServer:
    """One ``moto_server`` process; its state (buckets, objects) lives in its memory."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen[str] | None = None
        self.endpoint = ""
        self._drainer: threading.Thread | None = None
        self._admin: Any = None  # one client for making buckets: a new one costs ~0.1 s

    def start(self, timeout: float = 30) -> MotoServer:
        self.proc = subprocess.Popen(
            _moto_server_command(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "NO_COLOR": "1"},
        )
        assert self.proc.stderr is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.proc.stderr.readline()
            if not line:
                break
            match = re.search(r"Running on (http://127\.0\.0\.1:\d+)", line)
            if match:
                self.endpoint = match.group(1)
                # Keep reading its request log so the child never blocks on a full pipe.
                self._drainer = threading.Thread(target=self._drain, daemon=True)
                self._drainer.start()
                self._wait_until_serving(deadline)
                return self
        self.stop()
        raise RuntimeError("moto_server did not start")

    def _drain(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        for _ in self.proc.stderr:
            pass

    def _wait_until_serving(self, deadline: float) -> None:
        client = self.client()
        while time.monotonic() < deadline:
            try:
                client.list_buckets()
                return
            except Exception:
                time.sleep(0.05)
        raise RuntimeError("moto_server never answered")

    def client(self) -> Any:
        """A boto3 S3 client of this server (for tests that look at the bucket directly)."""
        return boto3.session.Session(
            aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY, region_name=REGION
        ).client(
            "s3",
            endpoint_url=self.endpoint,
            config=Config(retries={"max_attempts": 2}, connect_timeout=5, read_timeout=30),
        )

    def new_bucket(self) -> str:
        name = f"dropline-{uuid.uuid4().hex[:12]}"
        if self._admin is None:
            self._admin = self.client()
        self._admin.create_bucket(Bucket=name)
        return name

    def env(self, bucket: str, prefix: str = "data", home: Path | None = None) -> dict[str, str]:
        """What a server needs to keep its blobs in ``bucket`` under ``prefix``. With
        ``home``, the AWS config and credentials files point inside it, so no profile of
        the machine's user is read."""
        env = {
            "DROPLINE_BLOB_URL": f"s3://{bucket}/{prefix}",
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_REGION": REGION,
        }
        if home is not None:
            env["AWS_CONFIG_FILE"] = str(home / "aws-config")
            env["AWS_SHARED_CREDENTIALS_FILE"] = str(home / "aws-credentials")
        return env

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        if self._drainer is not None:
            self._drainer.join(timeout=5)
            self._drainer = None
        if self.proc is not None and self.proc.stderr is not None:
            self.proc.stderr.close()


@contextmanager
def moto_s3(tmp_path: Path) -> Iterator[dict[str, str]]:
    """A moto_server of its own with one bucket: yields the server's S3 environment."""
    server = MotoServer().start()
    try:
        yield server.env(server.new_bucket(), home=tmp_path)
    finally:
        server.stop()


_shared: MotoServer | None = None
_shared_lock = threading.Lock()


def shared_moto() -> MotoServer:
    """This test process's moto_server, started on first use, stopped at exit."""
    global _shared
    with _shared_lock:
        if _shared is None or _shared.proc is None or _shared.proc.poll() is not None:
            _shared = MotoServer().start()
            atexit.register(_shared.stop)
        return _shared


def stop_shared_moto() -> None:
    global _shared
    with _shared_lock:
        if _shared is not None:
            _shared.stop()
            _shared = None


@pytest.fixture
def s3_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """A fresh bucket on the shared moto_server, its environment set for the whole test
    (so in-process servers, server processes and ``Settings.from_env`` all use it) and
    returned for child processes."""
    server = shared_moto()
    env = server.env(server.new_bucket(), home=tmp_path)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    return env


def stored_blob_ids(blob_url: str) -> list[str]:
    """The ids of the blobs a server's store holds, on disk or in a bucket alike (for tests
    that count blobs: ``stored_blob_ids(live.settings.blob_url)``)."""
    from dropline.server.storage.blob_url import open_blob_store

    return sorted(f.blob_id for f in open_blob_store(blob_url).stored() if f.blob_id)


__all__ = [
    "MotoServer",
    "moto_s3",
    "s3_env",
    "shared_moto",
    "stop_shared_moto",
    "stored_blob_ids",
]
