"""Installed systemd units read the way systemd reads them, for tests that stand in for a
service manager (systemd is not PID 1 here): the unit and its drop-ins along the
manager's search path, specifiers, Environment= and EnvironmentFile=, and ExecStart=."""

from __future__ import annotations

import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

# Reads a file with the manager's rights; None when it cannot (systemd then skips it).
Reader = Callable[[Path], str | None]


def read_as_root(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except OSError:
        return None


@dataclass(frozen=True, slots=True)
class Unit:
    name: str
    path: Path
    dropins: tuple[Path, ...]  # those applied, in the order applied
    entries: tuple[tuple[str, str, str], ...]  # (section, key, raw value), in file order

    def values(self, section: str, key: str) -> list[str]:
        """Every value of a list setting; an empty assignment clears the earlier ones."""
        out: list[str] = []
        for sec, k, v in self.entries:
            if (sec, k) == (section, key):
                out = [] if v == "" else [*out, v]
        return out

    def value(self, section: str, key: str) -> str | None:
        found = [v for sec, k, v in self.entries if (sec, k) == (section, key)]
        return found[-1] if found else None


def unit_paths(user: bool, run_as: Callable[[list[str]], str]) -> list[Path]:
    """The manager's search path, highest priority first, from ``systemd-analyze``."""
    out = run_as(["systemd-analyze", "--user" if user else "--system", "unit-paths"])
    # Like systemd, each directory once, by its real path (Debian's /etc/xdg/systemd/user
    # is a link to /etc/systemd/user).
    unique: list[Path] = []
    for line in out.splitlines():
        if line.strip() and (real := Path(line).resolve()) not in unique:
            unique.append(real)
    return unique


def load(name: str, search: list[Path], read: Reader = read_as_root) -> Unit:
    """``name`` from the first directory of ``search`` that has it, with its drop-ins:
    ``NAME.d/*.conf`` and ``TYPE.d/*.conf`` from every directory, one per file name (the
    higher directory wins), applied in file-name order."""
    path = next((d / name for d in search if (d / name).is_file()), None)
    if path is None:
        raise FileNotFoundError(f"{name} is in none of {', '.join(map(str, search))}")
    text = read(path)
    if text is None:
        raise PermissionError(f"{path} cannot be read by the manager")
    by_name: dict[str, Path] = {}
    kind = name.rsplit(".", 1)[1]
    for directory in search:
        for dropin_dir in (directory / f"{name}.d", directory / f"{kind}.d"):
            if dropin_dir.is_dir():
                for conf in sorted(dropin_dir.glob("*.conf")):
                    by_name.setdefault(conf.name, conf)
    entries = list(parse(text))
    applied = []
    for conf_name in sorted(by_name):
        conf_text = read(by_name[conf_name])
        if conf_text is None:
            continue  # as systemd does, without a word
        applied.append(by_name[conf_name])
        entries += parse(conf_text)
    return Unit(name, path, tuple(applied), tuple(entries))


def parse(text: str) -> list[tuple[str, str, str]]:
    """systemd.syntax(7): sections, comments, backslash continuations, key=value."""
    entries = []
    section = ""
    pending = ""
    for raw in text.splitlines():
        line = pending + raw.strip()
        pending = ""
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        key, sep, value = line.partition("=")
        if sep:
            entries.append((section, key.strip(), value.strip()))
    return entries


def expand(text: str, specifiers: Mapping[str, str]) -> str:
    """Replace ``%x`` specifiers (``%%`` is a percent sign); an unknown one is an error,
    as it is for systemd."""
    out = []
    i = 0
    while i < len(text):
        if text[i] == "%" and i + 1 < len(text):
            key = text[i + 1]
            if key == "%":
                out.append("%")
            elif key in specifiers:
                out.append(specifiers[key])
            else:
                raise ValueError(f"unknown specifier %{key} in {text!r}")
            i += 2
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def environment(unit: Unit, specifiers: Mapping[str, str], read: Reader) -> dict[str, str]:
    """The service's own environment: Environment= assignments, then the files of
    EnvironmentFile= (which win, as in systemd.exec(5)); a missing file named with a
    leading ``-`` is skipped, any other is an error."""
    env: dict[str, str] = {}
    for value in unit.values("Service", "Environment"):
        for word in shlex.split(expand(value, specifiers)):
            key, _, val = word.partition("=")
            env[key] = val
    for value in unit.values("Service", "EnvironmentFile"):
        optional = value.startswith("-")
        path = Path(expand(value.removeprefix("-"), specifiers))
        text = read(path)
        if text is None:
            if optional:
                continue
            raise FileNotFoundError(f"EnvironmentFile {path} cannot be read")
        env.update(parse_env_file(text))
    return env


def parse_env_file(text: str) -> dict[str, str]:
    env = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line[0] in "#;":
            continue
        key, sep, value = line.partition("=")
        if sep:
            words = shlex.split(value) if value else [""]
            env[key.strip()] = " ".join(words)
    return env


def exec_start(unit: Unit, specifiers: Mapping[str, str]) -> list[str]:
    """The one ExecStart= command line, split as systemd splits it, without the
    ``@-:+!`` prefixes (none of which the units here use)."""
    lines = unit.values("Service", "ExecStart")
    assert len(lines) == 1, f"{unit.name}: expected one ExecStart=, got {lines}"
    line = lines[0].lstrip("@-:+!")
    argv = shlex.split(expand(line, specifiers))
    assert argv and argv[0].startswith("/"), f"{unit.name}: ExecStart= is not absolute"
    return argv


def umask(unit: Unit, default: int = 0o022) -> int:
    value = unit.value("Service", "UMask")
    return int(value, 8) if value else default
