"""The built wheel installs one top-level name, ``dropline``, and working commands."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ("pyproject.toml", "README.md", "dropline", "sdk", "sync", "agent", "ui", "server")
COMMANDS = ("dropline-agent", "dropline-server", "dropline-tray")


def run(*args: str | Path, cwd: Path) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    done = subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, f"{args}: exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel, built from a clean copy of the sources (an in-tree build directory
    could carry modules that no longer exist into it)."""
    src = tmp_path_factory.mktemp("src")
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(
                ROOT / name,
                src / name,
                symlinks=True,
                ignore=shutil.ignore_patterns("__pycache__"),
            )
        else:
            shutil.copy2(ROOT / name, src / name)
    out = tmp_path_factory.mktemp("wheel")
    pip = (sys.executable, "-m", "pip")
    run(*pip, "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w", out, src, cwd=src)
    (built,) = out.glob("dropline-*.whl")
    return built


@pytest.fixture(scope="module")
def fresh_env(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new, empty virtual environment."""
    venv = tmp_path_factory.mktemp("venv")
    run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=venv)
    return venv


def site_packages(venv: Path) -> Path:
    (found,) = venv.glob("lib/python*/site-packages")
    return found


def test_wheel_holds_one_top_level_name_and_its_data(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names} == {
        "dropline",
        wheel.name.split("-py")[0] + ".dist-info",
    }
    for part in ("sdk", "sync", "agent", "ui", "server"):
        assert f"dropline/{part}/__init__.py" in names
    assert "dropline/py.typed" in names
    assert "dropline/server/templates/signin.html" in names
    # Alembic finds the schema's environment and revisions as files beside the code.
    assert "dropline/server/storage/alembic/env.py" in names
    assert "dropline/server/storage/alembic/versions/r001_identity.py" in names
    assert any(n.startswith("dropline/ui/icons/") and n.endswith(".png") for n in names)


def test_installed_wheel_adds_only_dropline_and_its_commands_work(
    wheel: Path, fresh_env: Path
) -> None:
    site = site_packages(fresh_env)
    before = set(os.listdir(site))
    run(sys.executable, "-m", "pip", "--python", fresh_env / "bin" / "python", "install",
        "--quiet", "--no-deps", wheel, cwd=fresh_env)  # fmt: skip
    added = set(os.listdir(site)) - before
    assert {name for name in added if not name.endswith(".dist-info")} == {"dropline"}
    assert [name for name in added if name.endswith(".dist-info")] == [
        wheel.name.split("-py")[0] + ".dist-info"
    ]

    # The dependencies come from the test environment, behind the wheel's own files.
    deps = sysconfig.get_paths()["purelib"]
    (site / "zz_test_dependencies.pth").write_text(deps + "\n")
    bin_dir = fresh_env / "bin"
    python = bin_dir / "python"
    where = run(python, "-c", "import dropline.server; print(dropline.server.__file__)", cwd=site)
    assert Path(where.strip()).is_relative_to(site)

    for command in COMMANDS:
        assert f"usage: {command}" in run(bin_dir / command, "--help", cwd=fresh_env)
        assert run(bin_dir / command, "--version", cwd=fresh_env).startswith(f"{command} ")
    assert "usage: dropline-server" in run(python, "-m", "dropline.server", "--help", cwd=fresh_env)
    sql = run(bin_dir / "dropline-server", "migrate", "--sql", "--data-dir", fresh_env / "data",
              cwd=fresh_env)  # fmt: skip
    assert "CREATE TABLE tenants" in sql
    assert "usage: dropline-agent" in run(python, "-m", "dropline.agent", "--help", cwd=fresh_env)
