"""What a packaged command line owes scripts: quiet exit when the reader stops early
(``dropline-agent history | head -1``), and documented exit codes.

The pipes are real: the reader takes one line and closes its end while the command
still has more to write. Each pipe is shrunk to one page so that "more to write" holds
for any output longer than two pages, whatever the machine's default pipe size.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from dropline.agent import cli
from dropline.server.cli._common import open_services
from tests.agent.support import ROOT, AgentEnv, wait_for
from tests.support.live import LiveServer

PAGE = 4096
FILES = 300  # history rows: about 27 KB of text, far more than a page
GUIDE = (ROOT / "docs" / "deployment.md").read_text(encoding="utf-8")


def first_line_then_close(argv: Sequence[str], env: dict[str, str]) -> tuple[int, bytes, bytes]:
    """Run ``argv`` into a one-page pipe, read one line, close the pipe: (exit, line, stderr)."""
    read_end, write_end = os.pipe()
    fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, PAGE)
    proc = subprocess.Popen(
        argv, stdout=write_end, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, env=env, cwd=ROOT
    )
    os.close(write_end)
    with os.fdopen(read_end, "rb", buffering=0) as out:
        line = b""
        while not line.endswith(b"\n"):
            byte = out.read(1)
            if not byte:
                break
            line += byte
    # The read end is closed now: the command's next write fails with EPIPE.
    assert proc.stderr is not None
    err = proc.stderr.read()
    code = proc.wait(timeout=120)
    proc.stderr.close()
    return code, line, err


@pytest.fixture
def agent_with_history(tmp_path: Path, live_server: LiveServer, api_key: str) -> Iterator[AgentEnv]:
    """A running agent that has uploaded ``FILES`` files, so its history is long."""
    drop = tmp_path / "Drop"
    drop.mkdir()
    for n in range(FILES):
        (drop / f"report-{n:04d}.txt").write_text(f"report {n}\n")
    env = AgentEnv(tmp_path)
    env.extra_env["DROPLINE_API_KEY"] = api_key
    env.write_config(
        f'server_url = "{live_server.url}"\n\n[[folders]]\nlocal = "{drop}"\n'
        'remote = "/drop"\nmode = "upload-only"\n'
    )
    env.start()
    wait_for(
        lambda: len(json.loads(env.cli("history", "--json", "--limit", "1000").out)) >= FILES,
        timeout=120,
    )
    yield env
    env.stop()


def test_history_into_a_reader_that_stops_early_exits_quietly(
    agent_with_history: AgentEnv,
) -> None:
    env = agent_with_history
    for args in (["history", "--limit", "1000"], ["history", "--limit", "1000", "--json"]):
        whole = env.cli(*args)
        assert whole.code == 0 and len(whole.out) > 4 * PAGE  # more than the reader takes
        argv = [sys.executable, "-m", "dropline.agent", *args, "--home", str(env.home)]
        code, line, err = first_line_then_close(argv, env.env())
        assert err == b"", args  # no "Broken pipe", no traceback
        assert code == cli.OK, args
        assert line.decode() == whole.out.splitlines(keepends=True)[0]


@pytest.fixture(scope="module")
def server_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A server data directory with 150 tenants, each created with an audit row."""
    data = tmp_path_factory.mktemp("server") / "data"
    services = open_services(argparse.Namespace(data_dir=data))
    for n in range(150):
        services.admin.create_tenant(services.actor(None), f"branch-office-{n:04d}")
    services.db.dispose()
    return data


@pytest.mark.parametrize("args", [["tenants", "list"], ["audit", "export"]])
def test_server_output_into_a_reader_that_stops_early_exits_quietly(
    server_data: Path, args: list[str]
) -> None:
    data = server_data
    argv = [sys.executable, "-m", "dropline.server", *args, "--data-dir", str(data)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    code, line, err = first_line_then_close(argv, env)
    assert err == b""
    assert code == 0
    assert line  # it did write before the reader left


def test_exit_codes_are_in_the_help_and_the_guide_alike() -> None:
    codes = {v for k, v in vars(cli).items() if k.isupper() and isinstance(v, int) and k != "PROG"}
    assert codes == {code for code, _text in cli.EXIT_CODES}
    help_text = cli.build_parser().format_help()
    in_help = {int(c) for c in re.findall(r"^  (\d+) ", help_text.split("exit codes:")[1], re.M)}
    assert in_help == codes
    table = GUIDE.split("Exit codes")[1]
    in_guide = {int(c) for c in re.findall(r"^\| (\d+) \|", table, re.M)}
    assert codes <= in_guide


def test_policy_install_without_anything_to_install_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DROPLINE_POLICY_FILE", str(tmp_path / "policy.toml"))
    assert cli.main(["policy", "install"]) == cli.USAGE
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--server-url" in err
    assert not (tmp_path / "policy.toml").exists()
    missing = tmp_path / "nowhere.toml"
    assert cli.main(["policy", "install", "--from", str(missing)]) == cli.CONFIG_INVALID
    assert str(missing) in capsys.readouterr().err
