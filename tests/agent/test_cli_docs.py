"""Every CLI command is documented, with its exit codes, and the packaged templates are valid."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from dropline.agent import cli
from dropline.agent.config import load, parse_policy, read_toml

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "deployment.md").read_text()


def _commands() -> list[str]:
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    names = []
    for name, p in sub.choices.items():
        nested = [a for a in p._actions if isinstance(a, argparse._SubParsersAction)]
        names += [f"{name} {n}" for n in nested[0].choices] if nested else [name]
    return names


def test_every_command_is_documented() -> None:
    commands = _commands()
    assert "folders add" in commands and "doctor" in commands
    missing = [c for c in commands if f"`dropline-agent {c}" not in DOC]
    assert not missing, missing
    assert set(cli.COMMANDS) == {c.split()[0] for c in commands}


def test_every_exit_code_is_documented() -> None:
    codes = {v for k, v in vars(cli).items() if k.isupper() and isinstance(v, int) and k != "PROG"}
    documented = {int(m) for m in re.findall(r"^\| (\d+) \|", DOC, re.M)}
    assert codes <= documented, codes - documented


def test_every_protocol_operation_is_documented() -> None:
    from dropline.agent.control.protocol import OPS

    text = (ROOT / "docs" / "control-protocol.md").read_text()
    assert not [op for op in OPS if f"| `{op}` |" not in text]


def test_packaged_policy_and_config_templates_are_valid(tmp_path: Path) -> None:
    policy = ROOT / "packaging" / "policy" / "policy.toml"
    parsed = parse_policy(policy, read_toml(policy))
    assert parsed.locked == ["server_url", "bandwidth"]
    config = load(ROOT / "packaging" / "policy" / "agent.toml", policy)
    assert config.is_locked("bandwidth.upload_kbps")
    assert {f.remote for f in config.folders} == {"/invoices", "/inbox", "/team"}
    # The example user file sets what this policy locks: each is refused, nothing else.
    refused = sorted(line.split(": ")[1] for line in config.refused)
    assert refused == ["bandwidth.download_kbps", "bandwidth.upload_kbps", "server_url"]
    alone = load(ROOT / "packaging" / "policy" / "agent.toml", tmp_path / "no-policy.toml")
    assert alone.refused == () and alone.server_url == "https://mft.example.com"
    assert all(f.local.is_absolute() for f in config.folders)
