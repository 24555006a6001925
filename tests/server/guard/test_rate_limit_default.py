"""The default rate limits (no setting changed): a real agent syncing thousands of small
files, up and then down, never meets them; a script reading one URL in a loop meets a 429
with Retry-After and the RateLimit headers once its burst of a hundred is spent."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import httpx
import pytest

from dropline.server.settings import (
    DEFAULT_RATE_LIMIT_PER_CREDENTIAL,
    DEFAULT_RATE_LIMIT_PER_ENDPOINT,
    Settings,
)
from tests.agent.support import AgentEnv, wait_for
from tests.support.live import LiveServer

FILES = 2000


def test_the_defaults_are_the_documented_ones(server_settings: Settings) -> None:
    assert server_settings.rate_limit_per_credential == DEFAULT_RATE_LIMIT_PER_CREDENTIAL
    assert server_settings.rate_limit_per_endpoint == DEFAULT_RATE_LIMIT_PER_ENDPOINT
    assert Settings.from_env().rate_limit_per_endpoint == DEFAULT_RATE_LIMIT_PER_ENDPOINT
    docs = (Path(__file__).resolve().parents[3] / "docs" / "security.md").read_text()
    assert f"`{DEFAULT_RATE_LIMIT_PER_CREDENTIAL}`" in docs
    assert f"`{DEFAULT_RATE_LIMIT_PER_ENDPOINT}`" in docs


def test_a_loop_on_one_url_meets_429_after_its_burst(
    live_server: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Four loops at once, as a runaway script with a few threads would run; each stops at
    # its first 429. The limiter's clock stands still, so no token comes back during the
    # loop however slowly a busy machine answers: the burst, and not one request more.
    limiter = live_server.app.state.security.limiter  # type: ignore[attr-defined]
    now = limiter.clock()
    monkeypatch.setattr(limiter, "clock", lambda: now)
    key = live_server.new_key()
    refused: list[httpx.Response] = []
    answers: list[httpx.Response] = []
    lock = threading.Lock()

    def loop(c: httpx.Client) -> None:
        for _ in range(250):
            answer = c.get("/api/v1/me")
            with lock:
                answers.append(answer)
                if answer.status_code == 429 or refused:
                    refused.append(answer)
                    return

    with httpx.Client(base_url=live_server.url, headers={"Authorization": f"Bearer {key}"}) as c:
        threads = [threading.Thread(target=loop, args=(c,)) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        first = next((r for r in refused if r.status_code == 429), None)
        assert first is not None, f"no 429 in {len(answers)} requests"
        # The bucket of one URL's reads ran dry, not the credential's.
        assert first.json()["type"].endswith("/rate-limited")
        assert first.headers["ratelimit-policy"].startswith('"endpoint";q=')
        assert first.headers["ratelimit"].startswith('"endpoint";r=0;t=')
        assert int(first.headers["retry-after"]) >= 1
        assert {r.status_code for r in answers} == {200, 429}
        assert sum(r.status_code == 200 for r in answers) == 100  # the burst passes
        # Other URLs (and so a sync client reading many) are still answered.
        other = c.get("/api/v1/metadata", params={"path": "/nothing-here"})
        assert other.status_code == 404
        assert other.headers["ratelimit"].startswith('"endpoint";r=99;')


def _server_files(live: LiveServer, key: str, folder: str) -> int:
    count, cursor = 0, None
    with httpx.Client(base_url=live.url, headers={"Authorization": f"Bearer {key}"}) as c:
        while True:
            params = {"path": folder, "limit": "1000", **({"cursor": cursor} if cursor else {})}
            r = c.get("/api/v1/files", params=params)
            if r.status_code == 404:
                return 0
            page = r.json()
            count += len(page["entries"])
            cursor = page["next_cursor"]
            if not cursor:
                return count


def _answers(live: LiveServer, status: str) -> float:
    requests = live.app.state.metrics.requests  # type: ignore[attr-defined]
    return float(
        sum(
            sample.value
            for metric in requests.collect()
            for sample in metric.samples
            if sample.name.endswith("_total") and sample.labels["status"] == status
        )
    )


def _agent(tmp: Path, name: str, url: str, key: str, local: Path, mode: str) -> AgentEnv:
    env = AgentEnv(tmp, name)
    env.extra_env["DROPLINE_API_KEY"] = key
    env.write_config(
        f'server_url = "{url}"\n\n[[folders]]\nlocal = "{local}"\nremote = "/box"\n'
        f'mode = "{mode}"\n'
    )
    return env


@pytest.mark.timeout(300)
def test_an_agent_syncing_small_files_meets_no_429(live_server: LiveServer, tmp_path: Path) -> None:
    up = tmp_path / "up"
    (up / "docs").mkdir(parents=True)
    for i in range(FILES):
        (up / "docs" / f"f{i:05d}.bin").write_bytes(os.urandom(4096))
    reader = live_server.new_key()  # the same user, other keys: each agent its own

    uploader = _agent(tmp_path, "uploader", live_server.url, live_server.new_key(), up, "two-way")
    uploader.start()
    try:
        wait_for(lambda: _server_files(live_server, reader, "/box/docs") >= FILES, timeout=180)
    finally:
        assert uploader.stop() == 0

    down = tmp_path / "down"
    down.mkdir()
    key = live_server.new_key()
    downloader = _agent(tmp_path, "downloader", live_server.url, key, down, "download-only")
    downloader.start()
    try:
        wait_for(lambda: len(list((down / "docs").glob("*.bin"))) >= FILES, timeout=180)
    finally:
        assert downloader.stop() == 0

    assert _answers(live_server, "200") >= FILES  # every download, at least
    assert _answers(live_server, "429") == 0
