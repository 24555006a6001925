"""The webhook examples in docs/api.md, run as written: the curl block subscribes, the
receiver example (a process of its own) verifies and de-duplicates real deliveries."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from dropline.server.settings import Settings
from tests.server.ops_helpers import OPS_SCOPES, deliveries, upload
from tests.support.docs import doc_block, example_env, run_shell
from tests.support.live import LiveServer, running_server
from tests.support.receiver import Receiver, wait_until


class Lines:
    """A child process's stdout, line by line, as it comes."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.lines: list[str] = []
        assert proc.stdout is not None
        stream = proc.stdout
        self.reader = threading.Thread(
            target=lambda: self.lines.extend(iter(stream.readline, "")), daemon=True
        )
        self.reader.start()

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
        self.reader.join(10)  # it ends at EOF; only then is the pipe closed under it
        assert self.proc.stdout is not None
        self.proc.stdout.close()

    def starting(self, prefix: str) -> list[str]:
        return [line for line in self.lines if line.startswith(prefix)]


@pytest.fixture
def port() -> int:
    return Receiver().reserve_port()


@pytest.fixture
def children() -> Iterator[list[Lines]]:
    started: list[Lines] = []
    yield started
    for child in started:
        child.stop()


@pytest.fixture
def patient_server(ops_settings: Settings) -> Iterator[LiveServer]:
    """Retries every 0.2 s for 20 s: the ping below is sent before the receiver runs, and
    starting a Python process can take seconds on a busy machine."""
    with running_server(replace(ops_settings, webhook_retry_schedule=(0.2,) * 100)) as live:
        yield live


def test_the_documented_receiver_gets_verified_deliveries(
    patient_server: LiveServer, tmp_path: Path, port: int, children: list[Lines]
) -> None:
    ops_server = patient_server
    key = ops_server.new_key(scopes=OPS_SCOPES)
    env = example_env(ops_server.url, key, PORT=str(port))
    subscribe = run_shell(doc_block("webhooks-example"), tmp_path, env, timeout=60)
    assert subscribe.returncode == 0, subscribe.stderr
    assert subscribe.stdout.strip() == "webhook.ping"
    webhook = json.loads((tmp_path / "webhook.json").read_text())

    script = tmp_path / "receiver.py"
    script.write_text(doc_block("webhook-receiver", "python"), encoding="utf-8")
    proc = subprocess.Popen(
        [sys.executable, str(script)],
        env={**env, "DROPLINE_WEBHOOK_SECRET": webhook["secret"]},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    out = Lines(proc)
    children.append(out)
    # The ping was sent before the receiver listened; a retry brings it.
    wait_until(lambda: out.starting("webhook.ping"))

    headers = {"Authorization": f"Bearer {key}", "Tus-Resumable": "1.0.0"}
    with httpx.Client(base_url=ops_server.url, headers=headers) as api:
        upload(api, "/guide/hello.txt", b"hello")
        [line] = wait_until(lambda: out.starting("file.uploaded"))
        assert json.loads(line.split(" ", 1)[1])["entry"]["path"] == "/guide/hello.txt"

        forged = httpx.post(
            f"http://127.0.0.1:{port}/hooks",
            content=b'{"type":"file.deleted","data":{}}',
            headers={
                "webhook-id": "msg_x",
                "webhook-timestamp": "1",
                "webhook-signature": "v1,AAAA",
            },
        )
        assert forged.status_code == 400
        wait_until(lambda: out.starting("rejected:"))

        ping = next(d for d in deliveries(api, webhook["id"]) if d["event_type"] == "webhook.ping")
        api.post(f"/api/v1/webhooks/{webhook['id']}/deliveries/{ping['id']}/redeliver")
        wait_until(
            lambda: (
                (d := api.get(f"/api/v1/webhooks/{webhook['id']}/deliveries/{ping['id']}").json())[
                    "state"
                ]
                == "succeeded"
                and d["attempt_log"][-1]["outcome"] == "success"
                and len([a for a in d["attempt_log"] if a["outcome"] == "success"]) == 2
            )
        )
    assert len(out.starting("webhook.ping")) == 1  # the redelivery was recognised
    assert not out.starting("file.deleted")
