"""The Windows and macOS packaging files, which cannot be built here: each one parses, and
its names, paths and keys agree with the agent's code, the Linux package and the guide.

Names are taken from where they are defined (the console scripts in pyproject.toml, the
policy path in the agent's config, the unit name in its autostart code, the Linux unit's
ExecStart), never restated here.
"""

from __future__ import annotations

import ast
import plistlib
import re
import shlex
import sys
import tomllib
import xml.etree.ElementTree as ET
from pathlib import Path, PureWindowsPath
from typing import Any

import pytest

from dropline.agent import autostart, cli
from dropline.agent.config import POLICY_ENV, default_policy_path
from dropline.agent.credentials import API_KEY_ENV
from dropline.agent.paths import HOME_ENV, AgentPaths

ROOT = Path(__file__).resolve().parents[2]
PACKAGING = ROOT / "packaging"
WXS = PACKAGING / "windows" / "dropline.wxs"
WIXPROJ = PACKAGING / "windows" / "dropline.wixproj"
TASK = PACKAGING / "windows" / "dropline-agent-task.xml"
AGENT_PLIST = PACKAGING / "launchd" / "dev.dropline.agent.plist"
TRAY_PLIST = PACKAGING / "launchd" / "dev.dropline.tray.plist"
MAC_SPEC = PACKAGING / "macos" / "dropline-macos.spec"
LINUX_SPEC = PACKAGING / "pyinstaller" / "dropline.spec"
LINUX_UNIT = PACKAGING / "systemd" / "dropline-agent.service"
POLICY_TEMPLATE = PACKAGING / "policy" / "policy.toml"
GUIDE = (ROOT / "docs" / "deployment.md").read_text(encoding="utf-8")

WIX = "{http://wixtoolset.org/schemas/v4/wxs}"
TASK_NS = "{http://schemas.microsoft.com/windows/2004/02/mit/task}"


# -- what the names come from -------------------------------------------------------------


def workstation_commands() -> set[str]:
    """The console scripts of the workstation package (the server has its own)."""
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    return {name for name in scripts if name != "dropline-server"}


def linux_agent_args() -> list[str]:
    """The arguments the Linux unit starts the agent with (after the executable)."""
    (line,) = [ln for ln in LINUX_UNIT.read_text().splitlines() if ln.startswith("ExecStart=")]
    return shlex.split(line.removeprefix("ExecStart="))[1:]


def policy_path_on(platform: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.delenv(POLICY_ENV, raising=False)
    monkeypatch.setattr(sys, "platform", platform)
    monkeypatch.setenv("PROGRAMDATA", "%ProgramData%")
    path = default_policy_path()
    return PureWindowsPath(*path.parts) if platform == "win32" else path


def spec_calls(path: Path) -> dict[str, list[ast.Call]]:
    """The spec's calls by function name (EXE, COLLECT, BUNDLE, ...)."""
    calls: dict[str, list[ast.Call]] = {}
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            calls.setdefault(node.func.id, []).append(node)
    return calls


def keyword(call: ast.Call, name: str) -> Any:
    (value,) = [k.value for k in call.keywords if k.arg == name]
    return value


def literal(call: ast.Call, name: str) -> Any:
    return ast.literal_eval(keyword(call, name))


def exe_names(path: Path) -> dict[str, str]:
    """The spec's executables: variable name -> executable name."""
    tree = ast.parse(path.read_text(), str(path))
    out = {}
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Assign)
            and isinstance(node.value, ast.Call)
            and isinstance(node.value.func, ast.Name)
            and node.value.func.id == "EXE"
        ):
            (target,) = node.targets
            assert isinstance(target, ast.Name)
            out[target.id] = literal(node.value, "name")
    return out


def wix() -> ET.Element:
    return ET.parse(WXS).getroot()


def by_id(root: ET.Element, tag: str, ident: str) -> ET.Element:
    (found,) = [e for e in root.iter(WIX + tag) if e.get("Id") == ident]
    return found


def set_property(root: ET.Element, ident: str) -> list[str]:
    """The command line a deferred custom action runs, split like a command line."""
    value = by_id(root, "SetProperty", ident).get("Value")
    assert value
    return shlex.split(value)


def installed(value: str) -> str:
    """The command name of an executable the MSI installed: ``[INSTALLFOLDER]x.exe`` -> x."""
    assert value.startswith("[INSTALLFOLDER]"), value
    return PureWindowsPath(value.removeprefix("[INSTALLFOLDER]")).stem


def custom(root: ET.Element, action: str) -> ET.Element:
    (found,) = [e for e in root.iter(WIX + "Custom") if e.get("Action") == action]
    return found


def mac_app() -> ast.Call:
    (bundle,) = spec_calls(MAC_SPEC)["BUNDLE"]
    return bundle


# -- every file parses ------------------------------------------------------------------------


def test_every_platform_file_parses() -> None:
    assert wix().tag == WIX + "Wix"
    assert ET.parse(WIXPROJ).getroot().tag == "Project"
    assert ET.parse(TASK).getroot().tag == TASK_NS + "Task"
    for plist in (AGENT_PLIST, TRAY_PLIST):
        with plist.open("rb") as fh:
            assert plistlib.load(fh)["Label"] == plist.stem  # the file is named by its label
    compile(MAC_SPEC.read_text(), str(MAC_SPEC), "exec")


# -- Windows ------------------------------------------------------------------------------------


def test_msi_is_per_machine_into_program_files() -> None:
    root = wix()
    (package,) = root.iter(WIX + "Package")
    assert package.get("Scope") == "perMachine"
    assert package.get("Version") == "$(var.Version)"  # the build passes pyproject's version
    programs = by_id(root, "StandardDirectory", "ProgramFiles64Folder")
    (install,) = programs.iter(WIX + "Directory")
    assert (install.get("Id"), install.get("Name")) == ("INSTALLFOLDER", "Dropline")
    # The bundle is harvested into the install folder under the name the .wxs uses.
    harvest = ET.parse(WIXPROJ).getroot().find("ItemGroup/HarvestDirectory")
    assert harvest is not None
    assert harvest.findtext("ComponentGroupName") == "BundleFiles"
    assert harvest.findtext("DirectoryRefId") == "INSTALLFOLDER"
    assert "BundleFiles" in {e.get("Id") for e in root.iter(WIX + "ComponentGroupRef")}


def test_msi_public_properties_are_secure_and_documented() -> None:
    root = wix()
    public = {
        e.get("Id"): e
        for e in root.iter(WIX + "Property")
        if re.fullmatch(r"[A-Z_]+", e.get("Id") or "") and not (e.get("Id") or "").startswith("ARP")
    }
    assert set(public) == {"SERVER_URL", "NO_AUTOSTART", "POLICY_FILE"}
    for name, element in public.items():
        # Without Secure a per-machine install drops the value before the elevated part.
        assert element.get("Secure") == "yes", name
        assert re.search(rf"^\| `{name}` \|", GUIDE, re.M), f"{name} not in the guide's table"
    assert "msiexec /i dropline.msi /qn SERVER_URL=" in GUIDE


def test_msi_writes_the_policy_where_the_windows_agent_reads_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    root = wix()
    expected = policy_path_on("win32", monkeypatch)
    assert expected.parts[0] == "%ProgramData%" and expected.name == "policy.toml"
    appdata = by_id(root, "StandardDirectory", "CommonAppDataFolder")  # %ProgramData%
    (folder,) = appdata.iter(WIX + "Directory")
    assert [folder.get("Name")] == list(expected.parts[1:-1])
    # Users may create files in %ProgramData%: the folder's ACL is not inherited from it.
    (perm,) = by_id(root, "ComponentGroup", "PolicyLocation").iter(WIX + "PermissionEx")
    assert (perm.get("Sddl") or "").startswith("D:P")
    assert "(A;OICI;FRFX;;;BU)" in (perm.get("Sddl") or "")  # users: read only
    assert str(expected) in GUIDE


def test_msi_policy_command_is_the_agents_and_does_what_it_says(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The exact command line of the MSI's WritePolicy action, run against the real CLI."""
    exe, *args = set_property(wix(), "WritePolicy")
    assert installed(exe) in workstation_commands() and installed(exe).endswith("agent")
    condition = custom(wix(), "WritePolicy").get("Condition") or ""
    assert "SERVER_URL" in condition and "POLICY_FILE" in condition

    target = tmp_path / "ProgramData" / "Dropline" / "policy.toml"
    monkeypatch.setenv(POLICY_ENV, str(target))
    source = tmp_path / "it-policy.toml"
    source.write_text('# from IT\nlocked = ["server_url"]\nallow_sign_out = false\n')

    def msi(server_url: str, policy_file: str) -> int:
        props = {"[SERVER_URL]": server_url, "[POLICY_FILE]": policy_file}
        return cli.main([props.get(a, a) for a in args])

    assert msi("https://mft.example.com", "") == cli.OK  # SERVER_URL alone: a new file
    assert tomllib.loads(target.read_text()) == {"server_url": "https://mft.example.com"}
    assert target.stat().st_mode & 0o777 == 0o644  # every user's agent reads it
    assert msi("", str(source)) == cli.OK  # POLICY_FILE alone: copied as it is
    assert target.read_text() == source.read_text()
    assert msi("https://mft.example.com", str(source)) == cli.OK  # both: copied, URL set
    policy = tomllib.loads(target.read_text())
    assert policy["server_url"] == "https://mft.example.com" and policy["allow_sign_out"] is False
    assert target.read_text().startswith("# from IT\n")  # the administrator's comments stay
    before = target.read_text()
    assert msi("ftp://mft.example.com", "") == cli.CONFIG_INVALID  # fails the install...
    assert target.read_text() == before  # ...and changes nothing
    assert "server_url" in capsys.readouterr().err


def test_logon_task_is_the_one_the_msi_registers_and_runs_the_agent_as_linux_does() -> None:
    root = wix()
    create = set_property(root, "CreateLogonTask")
    delete = set_property(root, "DeleteLogonTask")
    assert create[0].endswith("schtasks.exe") and delete[0].endswith("schtasks.exe")
    name = create[create.index("/TN") + 1]
    assert delete[delete.index("/TN") + 1] == name
    xml_arg = create[create.index("/XML") + 1]
    assert xml_arg.startswith("[INSTALLFOLDER]")
    xml_file = xml_arg.removeprefix("[INSTALLFOLDER]")
    assert (PACKAGING / "windows" / xml_file) == TASK
    sources = [f.get("Source") or "" for f in root.iter(WIX + "File")]
    assert f"$(sys.SOURCEFILEDIR){xml_file}" in sources  # installed beside the agent
    assert "NO_AUTOSTART" in (custom(root, "CreateLogonTask").get("Condition") or "")

    task = ET.parse(TASK).getroot()
    assert task.findtext(f"{TASK_NS}RegistrationInfo/{TASK_NS}URI") == "\\" + name
    assert task.find(f"{TASK_NS}Triggers/{TASK_NS}LogonTrigger") is not None
    # Every member of Users, in their own session.
    assert task.findtext(f"{TASK_NS}Principals/{TASK_NS}Principal/{TASK_NS}GroupId") == (
        "S-1-5-32-545"
    )
    command = PureWindowsPath(
        (task.findtext(f"{TASK_NS}Actions/{TASK_NS}Exec/{TASK_NS}Command") or "").strip('"')
    )
    install = by_id(root, "Directory", "INSTALLFOLDER").get("Name")
    assert command.parts[:2] == ("%ProgramFiles%", install)  # ProgramFiles64Folder
    assert command.stem in workstation_commands() and command.stem.endswith("agent")
    arguments = shlex.split(
        task.findtext(f"{TASK_NS}Actions/{TASK_NS}Exec/{TASK_NS}Arguments") or ""
    )
    assert arguments == linux_agent_args()
    assert cli.build_parser().parse_args(arguments).command == "run"


def test_start_menu_and_logon_tray_start_the_bundled_tray() -> None:
    from dropline.ui.app import parse_args

    root = wix()
    (shortcut,) = root.iter(WIX + "Shortcut")
    tray = installed(shortcut.get("Target") or "")
    assert tray in workstation_commands() and tray.endswith("tray")
    run_key = by_id(root, "Component", "TrayAtLogon")
    assert "NO_AUTOSTART" in (run_key.get("Condition") or "")
    (value,) = run_key.iter(WIX + "RegistryValue")
    assert value.get("Key") == r"Software\Microsoft\Windows\CurrentVersion\Run"
    exe, *args = shlex.split(value.get("Value") or "")
    assert installed(exe) == tray
    # The logon task starts the agent: the tray started at logon must not race it.
    assert parse_args(args).no_start_agent


# -- macOS ----------------------------------------------------------------------------------


def test_macos_app_is_a_tray_app_with_the_linux_bundles_executables() -> None:
    app = mac_app()
    assert literal(app, "bundle_identifier") == "dev.dropline.tray"
    info = keyword(app, "info_plist")
    assert isinstance(info, ast.Dict)
    keys = [ast.literal_eval(k) for k in info.keys if k is not None]
    assert ast.literal_eval(info.values[keys.index("LSUIElement")]) is True
    assert literal(app, "name") == "Dropline.app"
    mac, linux = exe_names(MAC_SPEC), exe_names(LINUX_SPEC)
    assert set(mac.values()) == set(linux.values()) == workstation_commands()
    # BUNDLE makes the first executable in COLLECT the app's CFBundleExecutable.
    (collect,) = spec_calls(MAC_SPEC)["COLLECT"]
    first = collect.args[0]
    assert isinstance(first, ast.Name) and mac[first.id] == "dropline-tray"


def test_launchd_agent_matches_the_linux_unit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(HOME_ENV, raising=False)
    unit = autostart.unit_name(AgentPaths.resolve(), None)  # dropline-agent.service
    with AGENT_PLIST.open("rb") as fh:
        plist = plistlib.load(fh)
    # Reverse-DNS of the unit's name: dropline-agent -> dev.dropline.agent
    assert plist["Label"] == "dev." + unit.removesuffix(".service").replace("-", ".")
    exe, *args = plist["ProgramArguments"]
    app = literal(mac_app(), "name")
    assert exe == f"/Applications/{app}/Contents/MacOS/{Path(exe).name}"
    assert Path(exe).name in workstation_commands() and Path(exe).name.endswith("agent")
    assert args == linux_agent_args()
    assert plist["RunAtLoad"] is True and plist["KeepAlive"] == {"SuccessfulExit": False}


def test_launchd_tray_opens_the_app_and_leaves_the_agent_to_its_job() -> None:
    from dropline.ui.app import parse_args

    with TRAY_PLIST.open("rb") as fh:
        plist = plistlib.load(fh)
    assert plist["Label"] == literal(mac_app(), "bundle_identifier")
    exe, *args = plist["ProgramArguments"]
    app = literal(mac_app(), "name")
    assert exe == f"/Applications/{app}/Contents/MacOS/dropline-tray"
    assert parse_args(args).no_start_agent
    assert "KeepAlive" not in plist  # a user may quit the tray


# -- the policy file on every platform ------------------------------------------------------


@pytest.mark.parametrize("platform", ["linux", "darwin", "win32"])
def test_policy_location_is_documented_for_every_platform(
    platform: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = str(policy_path_on(platform, monkeypatch))
    assert f"`{path}`" in GUIDE
    assert path in POLICY_TEMPLATE.read_text()  # the template's header says where it goes


def test_platform_files_keep_the_default_policy_path_and_no_secrets() -> None:
    """None of them points the agent elsewhere or carries a credential."""
    for path in (WXS, TASK, AGENT_PLIST, TRAY_PLIST, MAC_SPEC):
        text = path.read_text()
        assert POLICY_ENV not in text and API_KEY_ENV not in text, path
        assert "EnvironmentVariables" not in text, path
