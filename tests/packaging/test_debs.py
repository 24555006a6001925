"""The .deb files in dist/: lintian, the units as systemd reads them, and a whole life on
this machine: installed with apt-get, files, owners and modes, the installed programs run
as their users (the server with its unit's settings), removed, then purged.

Runs as root, like CI. systemd is not PID 1 here, so the server's ExecStart= runs as the
unit's User= with the unit's environment (``standin``), not under systemd.
"""

from __future__ import annotations

import os
import re
import signal
import stat
import subprocess
import threading
import time
import tomllib
from collections.abc import Callable, Iterator
from importlib.metadata import version
from pathlib import Path

import httpx
import pytest

from dropline.agent.config import load
from tests.packaging import debinstall, standin, units
from tools import debs, elf

VERSION = version("dropline")
AGENT_UNIT = Path("/usr/lib/systemd/user/dropline-agent.service")
SERVER_UNIT = Path("/usr/lib/systemd/system/dropline-server.service")
GLOBAL_ENABLE = Path("/etc/systemd/user/default.target.wants/dropline-agent.service")
HELPER_STATE = Path("/var/lib/systemd/deb-systemd-user-helper-enabled")
DATA_DIR = Path("/var/lib/dropline")
ETC = Path("/etc/dropline")
# The server unit's sandbox, as the brief for the package asks it; more may be added.
HARDENING = {
    "User": "dropline",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "NoNewPrivileges": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "ReadWritePaths": "/var/lib/dropline",
    "CapabilityBoundingSet": "",
    "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
}
# systemd-analyze security's exposure, 0 (locked down) to 100; the unit scores 11.
MAX_EXPOSURE = 15


def debs_in(dist: Path) -> list[Path]:
    return [debs.deb_path(dist, p, VERSION) for p in debs.PACKAGES]


@pytest.fixture(scope="module")
def lintian(dist: Path) -> Iterator[subprocess.Popen[str]]:
    """lintian on both packages, started at once: it takes most of a minute, which the
    installation tests use meanwhile."""
    proc = subprocess.Popen(
        ["lintian", "--no-cfg", "--display-level", ">=warning", *map(str, debs_in(dist))],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    yield proc
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()


@pytest.fixture(scope="module")
def installed(dist: Path, lintian: subprocess.Popen[str]) -> Iterator[debinstall.Installed]:
    assert os.geteuid() == 0, "these tests install packages: run them as root, as CI does"
    with debinstall.installed(
        debs_in(dist),
        users=("dropline",),
        # A purge keeps the server's data on purpose; the test still cleans it up.
        leftovers=(DATA_DIR,),
    ) as state:
        yield state


def test_packages_depend_on_what_the_bundles_take_from_the_system(dist: Path) -> None:
    fields = {
        deb.name.split("_")[0]: subprocess.run(
            ["dpkg-deb", "--field", str(deb), "Depends"], capture_output=True, text=True
        ).stdout.strip()
        for deb in debs_in(dist)
    }
    assert re.fullmatch(r"libc6 \(>= 2\.\d+\), libegl1, libgl1, libxcb1", fields["dropline"])
    assert re.fullmatch(r"libc6 \(>= 2\.\d+\), adduser", fields["dropline-server"])


def test_installed_files_owners_and_modes(installed: debinstall.Installed) -> None:
    for package, files in installed.files.items():
        for path in files:
            st = path.lstat()
            assert st.st_uid == 0, f"{path} owned by uid {st.st_uid}"
            assert not st.st_mode & stat.S_IWOTH or stat.S_ISLNK(st.st_mode), f"{path}"
            if path != ETC / "server.env":
                assert st.st_gid == 0, f"{package}: {path} group {st.st_gid}"
    for command, bundle in (
        ("dropline-agent", "dropline"),
        ("dropline-tray", "dropline"),
        ("dropline-server", "dropline-server"),
    ):
        link = Path("/usr/bin") / command
        assert os.readlink(link) == f"/opt/{bundle}/{command}"
        assert stat.S_IMODE(link.stat().st_mode) == 0o755
    assert mode(AGENT_UNIT) == mode(SERVER_UNIT) == 0o644
    assert os.readlink(GLOBAL_ENABLE) == str(AGENT_UNIT)
    for size in debs.ICON_SIZES:
        assert Path(f"/usr/share/icons/hicolor/{size}x{size}/apps/dropline.png").is_file()
    assert Path("/usr/share/icons/hicolor/scalable/apps/dropline.svg").is_file()
    for entry in (
        "/etc/xdg/autostart/dropline-tray.desktop",
        "/usr/share/applications/dropline.desktop",
    ):
        text = Path(entry).read_text()
        assert "\nIcon=dropline\n" in text and "\nExec=dropline-tray" in text
    assert installed.conffiles["dropline"] == {
        ETC / "policy.toml",
        Path("/etc/xdg/autostart/dropline-tray.desktop"),
    }
    assert installed.conffiles["dropline-server"] == {ETC / "server.env"}
    env = ETC / "server.env"
    assert (mode(env), env.owner(), env.group()) == (0o640, "root", "dropline")
    assert (mode(DATA_DIR), DATA_DIR.owner(), DATA_DIR.group()) == (0o750, "dropline", "dropline")
    account = standin.Account.of("dropline")
    assert account.uid < 1000 and account.shell.endswith("nologin")
    for doc in ("dropline", "dropline-server"):
        assert Path(f"/usr/share/doc/{doc}/copyright").is_file()
        assert Path(f"/usr/share/doc/{doc}/changelog.gz").is_file()
    nginx_sample = Path("/usr/share/doc/dropline-server/nginx-dropline-server.conf")
    assert (
        nginx_sample.read_bytes()
        == (debs.ROOT / "packaging/nginx/dropline-server.conf").read_bytes()
    )


def test_installed_libraries_search_no_build_machine_path(
    installed: debinstall.Installed,
) -> None:
    elves = [
        p
        for files in installed.files.values()
        for p in files
        if p.is_file() and not p.is_symlink() and elf.is_elf(p)
    ]
    assert len(elves) > 100
    out = subprocess.run(
        ["readelf", "--dynamic", "--wide", *map(str, elves)], capture_output=True, text=True
    ).stdout
    assert "(RUNPATH)" not in out and "(RPATH)" not in out


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_no_key_in_any_unit_and_keys_come_from_the_environment(
    installed: debinstall.Installed,
) -> None:
    agent = units.load(AGENT_UNIT.name, [AGENT_UNIT.parent])
    server = units.load(SERVER_UNIT.name, [SERVER_UNIT.parent])
    for unit in (agent, server):
        for _section, key, value in unit.entries:
            assert not re.search(r"KEY|TOKEN|SECRET|PASSWORD", value), f"{unit.name}: {key}"
    assert agent.values("Service", "EnvironmentFile") == ["-%h/.config/dropline/agent.env"]
    assert units.exec_start(agent, {}) == ["/usr/bin/dropline-agent", "run"]
    assert agent.value("Install", "WantedBy") == "default.target"


def test_units_pass_systemd_analyze_verify(installed: debinstall.Installed) -> None:
    done = subprocess.run(
        ["systemd-analyze", "verify", str(SERVER_UNIT)], capture_output=True, text=True
    )
    assert (done.returncode, done.stderr) == (0, "")
    # A user manager's view, which needs a runtime directory: nobody stands in for a user.
    nobody = standin.Account.of("nobody")
    with standin.runtime_dir(nobody) as runtime:
        done = nobody.run(
            ["systemd-analyze", "--user", "verify", str(AGENT_UNIT)],
            env={"PATH": standin.USER_PATH, "XDG_RUNTIME_DIR": str(runtime), "HOME": "/"},
        )
    assert (done.returncode, done.stderr) == (0, "")


def test_server_unit_is_hardened(installed: debinstall.Installed) -> None:
    unit = units.load(SERVER_UNIT.name, [SERVER_UNIT.parent])
    for key, expected in HARDENING.items():
        assert unit.value("Service", key) == expected, key
    assert unit.values("Service", "SystemCallFilter")[0] == "@system-service"
    done = subprocess.run(
        [
            "systemd-analyze",
            "security",
            "--offline=yes",
            f"--threshold={MAX_EXPOSURE}",
            str(SERVER_UNIT),
        ],
        capture_output=True,
        text=True,
    )
    overall = re.search(r"Overall exposure level for \S+: ([\d.]+)", done.stdout)
    assert done.returncode == 0 and overall, done.stdout + done.stderr
    print(f"systemd-analyze security: {overall.group(1)}")


def test_policy_template_changes_nothing(installed: debinstall.Installed, tmp_path: Path) -> None:
    policy = ETC / "policy.toml"
    assert tomllib.loads(policy.read_text()) == {}
    user_file = tmp_path / "agent.toml"
    with_template = load(user_file, policy)
    without = load(user_file, tmp_path / "no-policy.toml")
    assert with_template.settings() == without.settings()
    assert with_template.folders == without.folders == ()
    # Every setting is there to uncomment: doing so gives the documented template back.
    uncommented = re.sub(r"(?m)^#(?=\[|[A-Za-z_]+\s*=)", "", policy.read_text())
    template = debs.POLICY_TEMPLATE.read_text()
    assert tomllib.loads(uncommented) == tomllib.loads(template)


def test_maintainer_scripts_never_touch_homes(installed: debinstall.Installed) -> None:
    scripts = sorted(Path("/var/lib/dpkg/info").glob("dropline*.p*"))
    assert {s.name for s in scripts} >= {"dropline.postinst", "dropline.postrm"}
    for script in scripts:
        text = script.read_text()
        for word in ("/home", "~", "HOME", ".config", "getent passwd", "/root"):
            assert word not in text, f"{script.name} mentions {word}"


def test_installed_agent_and_tray_answer_as_a_user(installed: debinstall.Installed) -> None:
    nobody = standin.Account.of("nobody")
    for command in ("dropline-agent", "dropline-tray"):
        done = nobody.run([f"/usr/bin/{command}", "--version"])
        assert (done.returncode, done.stdout.strip()) == (0, f"{command} {VERSION}"), done.stderr


def test_installed_server_serves_as_its_user_with_its_units_settings(
    installed: debinstall.Installed,
) -> None:
    search = units.unit_paths(user=False, run_as=lambda argv: run_root(argv))
    unit = units.load(SERVER_UNIT.name, search)
    account = standin.Account.of(unit.value("Service", "User") or "root")
    assert unit.value("Service", "Group") == "dropline"
    specifiers = standin.system_specifiers(account, unit.name)
    env = {
        **standin.system_service_env(account),
        **units.environment(unit, specifiers, units.read_as_root),
    }
    assert env["DROPLINE_DATA_DIR"] == str(DATA_DIR)
    assert (env["DROPLINE_HOST"], env["DROPLINE_PORT"]) == ("127.0.0.1", "8600")
    env["DROPLINE_PORT"] = "0"  # a free port: 8600 may be taken on a shared machine
    argv = standin.sandbox_prefix(unit) + units.exec_start(unit, specifiers)
    proc = subprocess.Popen(
        argv,
        env=env,
        cwd="/",
        umask=units.umask(unit),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        **account.identity(),
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stderr or []), daemon=True)
    reader.start()
    try:
        url = wait_for(lambda: re.search(r"listening on (http://127\.0\.0\.1:\d+)", "".join(lines)))
        assert httpx.get(f"{url.group(1)}/readyz", timeout=10).status_code == 200
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        code = proc.wait(timeout=30)
        reader.join(timeout=10)
        if proc.stderr is not None:
            proc.stderr.close()
    assert code in (0, -signal.SIGTERM), "".join(lines)
    assert "Traceback" not in "".join(lines)
    # What the server wrote is its user's, and private to it (UMask=0077).
    written = list(DATA_DIR.rglob("*"))
    assert any(p.name == "dropline.db" for p in written)
    for path in written:
        st = path.lstat()
        assert (st.st_uid, st.st_gid) == (account.uid, account.gid), path
        assert not st.st_mode & 0o077, f"{path} is {oct(stat.S_IMODE(st.st_mode))}"
    done = account.run(["/usr/bin/dropline-server", "--version"])
    assert (done.returncode, done.stdout.strip()) == (0, f"dropline-server {VERSION}")


def run_root(argv: list[str]) -> str:
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout


def wait_for(check: Callable[[], re.Match[str] | None], timeout: float = 30) -> re.Match[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout} s")


def test_remove_keeps_only_conffiles_and_data_then_purge_leaves_nothing(
    installed: debinstall.Installed,
) -> None:
    debinstall.apt("remove", *installed.packages)
    status = debinstall.dpkg_status()
    assert [status[p] for p in installed.packages] == ["rc", "rc"]
    for package, files in installed.files.items():
        left = {p for p in files if (p.exists() or p.is_symlink()) and not p.is_dir()}
        assert left == installed.conffiles[package], package
    assert not Path("/opt/dropline").exists() and not Path("/opt/dropline-server").exists()
    # Configuration a remove keeps, as Debian does: the administrator's choice to enable
    # the agent for every user, and the server's data and user.
    assert GLOBAL_ENABLE.is_symlink()
    assert (DATA_DIR / "dropline.db").exists() and debinstall.user_exists("dropline")

    debinstall.apt("purge", *installed.packages)
    for package, files in installed.files.items():
        assert subprocess.run(["dpkg", "-L", package], capture_output=True).returncode != 0
        left = {p for p in files if (p.exists() or p.is_symlink()) and not p.is_dir()}
        assert left == set(), package
    assert not ETC.exists()
    assert not GLOBAL_ENABLE.is_symlink()
    assert not list(HELPER_STATE.rglob("dropline*"))
    assert not list(Path("/var/lib/systemd/deb-systemd-helper-enabled").rglob("dropline*"))
    # The users' files on the server are never deleted by a purge (README.Debian says so).
    assert (DATA_DIR / "dropline.db").exists()


def test_lintian_reports_no_errors_or_warnings(lintian: subprocess.Popen[str]) -> None:
    out, _ = lintian.communicate(timeout=600)
    problems = [line for line in out.splitlines() if re.match(r"^[EW]: ", line)]
    assert lintian.returncode == 0, out
    assert problems == [], "\n".join(problems)
