"""``dropline-agent doctor`` on the failures IT meets when deploying: each one is one line
saying what is wrong and how to fix it. Real server, real agent, real files and sockets."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import keyring
import pytest
import trustme
from keyring.backend import KeyringBackend

from dropline.agent import cli, doctor
from dropline.agent.paths import AgentPaths
from dropline.server.settings import Settings
from tests.agent.keyring_backend import MemoryKeyring
from tests.agent.support import AgentEnv, wait_for
from tests.support.live import LiveServer, running_server
from tests.support.receiver import Receiver, Reply


@pytest.fixture
def paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AgentPaths:
    monkeypatch.setenv("DROPLINE_POLICY_FILE", str(tmp_path / "policy.toml"))
    monkeypatch.delenv("DROPLINE_API_KEY", raising=False)
    p = AgentPaths.resolve(tmp_path / "home")
    p.ensure()
    return p


@pytest.fixture
def empty_keyring() -> Iterator[MemoryKeyring]:
    before: KeyringBackend = keyring.get_keyring()
    backend = MemoryKeyring()
    keyring.set_keyring(backend)
    yield backend
    keyring.set_keyring(before)


def failures(paths: AgentPaths) -> dict[str, doctor.Check]:
    return {c.name: c for c in doctor.run_checks(paths) if not c.ok}


def use_server(paths: AgentPaths, url: str, folder: Path | None = None) -> None:
    text = f'server_url = "{url}"\n'
    if folder is not None:
        text += f'\n[[folders]]\nlocal = "{folder}"\n'
    paths.config.write_text(text)


def test_a_broken_policy_file_is_one_line_for_the_administrator(
    paths: AgentPaths, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text('server_url = "https://mft.example.com"\nlocked = ["colour"]\n')
    code = cli.main(["doctor", "--home", str(paths.home)])
    out = capsys.readouterr().out
    assert code == cli.FAILED
    (line,) = out.splitlines()  # nothing else can be checked without a valid policy
    assert line.startswith(f"[FAIL] policy: {policy}: locked: cannot lock colour")
    assert "; fix: the policy file is your administrator's: they fix locked in" in line

    policy.write_text("server_url = \n")  # not even TOML
    (check,) = doctor.run_checks(paths)
    assert check.name == "policy" and "not valid TOML" in check.detail
    assert "\n" not in check.line()


def test_no_credential_names_both_ways_to_enroll(
    paths: AgentPaths, live_server: LiveServer, empty_keyring: MemoryKeyring
) -> None:
    use_server(paths, live_server.url)
    check = failures(paths)["credentials"]
    assert check.detail == "no credential: not signed in"
    assert check.fix is not None
    assert "login --device" in check.fix and "DROPLINE_API_KEY" in check.fix
    assert "systemd drop-in" in check.fix


def test_a_refused_api_key_is_told_apart_from_a_missing_one(
    paths: AgentPaths,
    live_server: LiveServer,
    api_key: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    use_server(paths, live_server.url)
    revoked = "dlk_" + "0" * 40
    monkeypatch.setenv("DROPLINE_API_KEY", revoked)
    check = failures(paths)["api key"]
    assert "refused the API key from DROPLINE_API_KEY (HTTP 401" in check.detail
    assert "new key" in (check.fix or "")
    cli.main(["doctor", "--home", str(paths.home)])
    assert revoked not in capsys.readouterr().out  # never a secret in the report
    monkeypatch.setenv("DROPLINE_API_KEY", api_key)
    good = {c.name: c for c in doctor.run_checks(paths)}["api key"]
    assert good.ok and good.detail.endswith("for alice@example.com")


def test_the_running_agents_own_credential_counts(
    paths: AgentPaths, live_server: LiveServer, api_key: str, tmp_path: Path
) -> None:
    """The key lives in the service's environment, not in the shell that runs doctor."""
    env = AgentEnv(tmp_path, "svc")
    env.write_config(f'server_url = "{live_server.url}"\n')
    svc_paths = AgentPaths.resolve(env.home)
    try:
        env.start()  # no key anywhere: up, signed out
        check = {c.name: c for c in doctor.run_checks(svc_paths)}["credentials"]
        assert not check.ok and check.detail.startswith("the running agent is signed out")
        assert "DROPLINE_API_KEY" in (check.fix or "")
        env.stop()
        env.extra_env["DROPLINE_API_KEY"] = api_key
        env.start()
        signed_in = wait_for(
            lambda: (
                (c := {c.name: c for c in doctor.run_checks(svc_paths)}["credentials"]).ok
                and "alice" in c.detail
                and c
            )
        )
        assert signed_in.detail == "the running agent is signed in as alice@example.com"
    finally:
        env.stop()


def test_an_unreachable_server_says_why(paths: AgentPaths, empty_keyring: MemoryKeyring) -> None:
    nothing = Receiver()
    nothing.reserve_port()  # nothing listens there
    use_server(paths, nothing.url)
    check = failures(paths)["server"]
    assert (
        check.detail
        == f"cannot connect to {nothing.url} (connection refused: nothing listens there)"
    )
    assert check.fix == doctor.NETWORK_FIX
    use_server(paths, "https://mft.no-such-host.invalid")
    check = failures(paths)["server"]
    assert "(mft.no-such-host.invalid is not found)" in check.detail


def test_something_else_answering_is_not_a_dropline_server(
    paths: AgentPaths, empty_keyring: MemoryKeyring
) -> None:
    other = Receiver()
    other.default = Reply(404)
    other.start()
    try:
        use_server(paths, other.url + "/dropline")  # a path the guide says not to add
        check = failures(paths)["server"]
        assert "not a Dropline server, or a path in the URL" in check.detail
        assert "address alone" in (check.fix or "")
    finally:
        other.stop()


def test_tls_trouble_is_told_apart(
    paths: AgentPaths,
    live_server: LiveServer,
    server_settings: Settings,
    tmp_path: Path,
    empty_keyring: MemoryKeyring,
) -> None:
    ca = trustme.CA()  # a private CA the system store does not know
    ca.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(tmp_path / "s.pem")
    tls = dataclasses.replace(
        server_settings,
        data_dir=tmp_path / "tls-data",
        tls_cert=tmp_path / "s.pem",
        tls_key=tmp_path / "s.pem",
    )
    with running_server(tls) as secure:
        use_server(paths, secure.url)
        check = failures(paths)["tls"]
        assert check.detail.startswith(f"the certificate of {secure.url} is not trusted")
        assert "CA certificate" in (check.fix or "")
    # https:// to a server that speaks plain HTTP on that port
    plain = live_server.url.replace("http://", "https://")
    use_server(paths, plain)
    check = failures(paths)["tls"]
    assert check.detail.startswith(f"no TLS connection to {plain}")
    assert "speaks HTTPS" in (check.fix or "")


def test_a_folder_that_is_missing_or_a_file(
    paths: AgentPaths,
    live_server: LiveServer,
    api_key: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DROPLINE_API_KEY", api_key)
    folder = tmp_path / "Dropline"
    use_server(paths, live_server.url, folder)
    assert failures(paths)[f"folder {folder}"].fix == f"mkdir -p '{folder}'"
    folder.write_text("not a folder")
    check = failures(paths)[f"folder {folder}"]
    assert check.detail == "is a file, not a folder" and "move the file away" in (check.fix or "")
    folder.unlink()
    folder.mkdir()
    assert f"folder {folder}" not in failures(paths)
