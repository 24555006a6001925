"""``dropline-server`` administration commands, run as a process against a data directory,
and every command documented in the deployment guide."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import trustme

from dropline.server.cli import build_parser

ROOT = Path(__file__).resolve().parents[3]
DOCS = (ROOT / "docs" / "deployment.md").read_text(encoding="utf-8") + (
    ROOT / "docs" / "api.md"
).read_text(encoding="utf-8")


def cli(
    data: Path, *args: str, ok: bool = True, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", "dropline.server.cli", *args, "--data-dir", str(data)],
        capture_output=True,
        text=True,
        timeout=60,
        input=stdin,
        env={**os.environ, "DROPLINE_PASSWORD": "long enough pw"},
    )
    if ok:
        assert done.returncode == 0, (args, done.stderr)
    return done


def add_robot(data: Path) -> None:
    """robot@acme.example: a user of acme without a password, for keys and service clients."""
    cli(
        data,
        "users",
        "create",
        "--tenant",
        "acme",
        "--email",
        "robot@acme.example",
        "--no-password",
    )


def commands() -> list[str]:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    names = []
    for group, gp in sub.choices.items():  # type: ignore[union-attr]
        actions = [a for a in gp._actions if a.dest == "action"]
        if not actions:
            names.append(group)
            continue
        names.extend(f"{group} {action}" for action in actions[0].choices)  # type: ignore[union-attr]
    return names


@pytest.mark.parametrize("command", commands())
def test_every_command_is_documented(command: str) -> None:
    assert (
        f"dropline-server {command}" in DOCS
        or f"`{command}`" in DOCS
        or (f"{command.split()[0]} {command.split()[-1]}" in DOCS)
    ), command


def test_account_and_key_commands(tmp_path: Path) -> None:
    data = tmp_path / "data"
    cli(data, "tenants", "create", "acme")
    cli(data, "users", "create", "--tenant", "acme", "--email", "it@acme.example", "--super-admin")
    add_robot(data)
    assert [t["name"] for t in json.loads(cli(data, "tenants", "list").stdout)] == ["acme"]
    users = json.loads(cli(data, "users", "list", "--tenant", "acme").stdout)
    assert {u["email"]: u["is_admin"] for u in users} == {
        "it@acme.example": True,
        "robot@acme.example": False,
    }

    made = cli(data, "api-keys", "create", "--tenant", "acme", "--user", "robot@acme.example")
    key = made.stdout.strip()
    assert key.startswith("dlk_") and key not in made.stderr
    [info] = json.loads(cli(data, "api-keys", "list", "--tenant", "acme").stdout)
    rotated = cli(
        data, "api-keys", "rotate", info["id"], "--tenant", "acme", "--old-expires-in", "1h"
    )
    assert rotated.stdout.strip().startswith("dlk_") and rotated.stdout.strip() != key
    cli(data, "api-keys", "revoke", info["id"], "--tenant", "acme")
    states = {
        k["id"]: k["state"]
        for k in json.loads(cli(data, "api-keys", "list", "--tenant", "acme").stdout)
    }
    assert states[info["id"]] == "revoked" and list(states.values()).count("active") == 1

    cli(data, "users", "disable", "--tenant", "acme", "--email", "robot@acme.example")
    users = json.loads(cli(data, "users", "list", "--tenant", "acme").stdout)
    assert [u["is_active"] for u in users if u["email"] == "robot@acme.example"] == [False]

    # Mistakes are one readable line and exit 1.
    dup = cli(data, "tenants", "create", "acme", ok=False)
    assert (
        dup.returncode == 1
        and dup.stderr.strip() == "dropline-server: tenant 'acme' already exists"
    )
    bad = cli(
        data,
        "api-keys",
        "create",
        "--tenant",
        "acme",
        "--user",
        "it@acme.example",
        "--scopes",
        "root",
        ok=False,
    )
    assert bad.returncode == 1 and "unknown scope" in bad.stderr and "Traceback" not in bad.stderr


def test_security_commands(tmp_path: Path) -> None:
    data = tmp_path / "data"
    cli(data, "tenants", "create", "acme")
    add_robot(data)

    client = json.loads(
        cli(
            data,
            "clients",
            "create",
            "--tenant",
            "acme",
            "--name",
            "ERP",
            "--grant-types",
            "client_credentials",
            "--service-user",
            "robot@acme.example",
        ).stdout
    )
    assert client["client_id"].startswith("dlc_") and client["client_secret"]
    listed = json.loads(cli(data, "clients", "list", "--tenant", "acme").stdout)
    assert [c["client_id"] for c in listed] == [client["client_id"]]
    cli(data, "clients", "revoke", client["client_id"], "--tenant", "acme")

    rules = json.dumps({"max_file_size": 10, "blocked_extensions": ["exe"]})
    cli(data, "policies", "set", "--tenant", "acme", "-", stdin=rules)
    shown = json.loads(cli(data, "policies", "show", "--tenant", "acme").stdout)
    assert shown == {"max_file_size": 10, "blocked_extensions": [".exe"]}
    wrong = cli(
        data, "policies", "set", "--tenant", "acme", "-", stdin='{"max_file_size": -1}', ok=False
    )
    assert wrong.returncode == 1 and "max_file_size" in wrong.stderr
    cli(data, "policies", "clear", "--tenant", "acme")
    assert json.loads(cli(data, "policies", "show", "--tenant", "acme").stdout) == {}

    pem = tmp_path / "robot.pem"
    trustme.CA().issue_cert("robot.acme.example").cert_chain_pems[0].write_to_path(pem)
    cert = json.loads(
        cli(
            data,
            "certs",
            "map",
            "--tenant",
            "acme",
            "--user",
            "robot@acme.example",
            "--cert",
            str(pem),
        ).stdout
    )
    assert len(cert["fingerprint"]) == 64
    assert [c["id"] for c in json.loads(cli(data, "certs", "list", "--tenant", "acme").stdout)] == [
        cert["id"]
    ]
    cli(data, "certs", "revoke", cert["id"], "--tenant", "acme")

    assert json.loads(cli(data, "bans", "list").stdout) == []
    assert cli(data, "bans", "lift", "192.0.2.1", ok=False).returncode == 1

    [first] = json.loads(cli(data, "signing-keys", "list").stdout)
    cli(data, "signing-keys", "rotate")
    keys = json.loads(cli(data, "signing-keys", "list").stdout)
    assert [k["current"] for k in keys] == [False, True]
    assert cli(data, "signing-keys", "retire", keys[1]["kid"], ok=False).returncode == 1
    cli(data, "signing-keys", "retire", first["kid"])

    cli(data, "encryption", "enable", "--tenant", "acme")
    status = json.loads(cli(data, "encryption", "status").stdout)
    assert status["master_key"] == "file" and [t["tenant"] for t in status["tenants"]] == ["acme"]

    verified = cli(data, "audit", "verify")
    assert "audit chain intact" in verified.stderr
    exported = [json.loads(line) for line in cli(data, "audit", "export").stdout.splitlines()]
    actions = [e["action"] for e in exported]
    assert "admin.client.create" in actions and "admin.encryption.enable" in actions
    assert all(e["actor"].startswith("cli:") for e in exported)
    assert client["client_secret"] not in json.dumps(exported)
    as_csv = cli(data, "audit", "export", "--format", "csv").stdout.splitlines()
    assert as_csv[0].startswith("id,at,tenant_id") and len(as_csv) == len(exported) + 1
    cli(data, "audit", "prune", "--days", "30")
