"""``dropline-agent policy install``: writes the machine's policy file for installers and IT.

The Windows MSI calls it for ``SERVER_URL`` and ``POLICY_FILE``; on other platforms an
administrator may too. The result is validated as a whole before it replaces the file.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import tomlkit

from dropline.agent.config import (
    ConfigError,
    UserFile,
    check_server_url,
    merge,
    parse_policy,
)
from dropline.agent.configedit import atomic_write


def install_policy(target: Path, server_url: str | None, source: Path | None) -> Path:
    """Copy ``source`` to ``target`` and/or set ``server_url`` in it; returns ``target``.

    Without ``source`` an existing ``target`` is edited in place (comments kept) or a
    new one is started. :class:`ConfigError` names the file and key of any problem, and
    then ``target`` is left as it was.
    """
    if source is not None and not source.is_file():
        raise ConfigError(source, None, "does not exist or is not a file")
    base = source if source is not None else target
    doc = _parse(base) if base.exists() else tomlkit.document()
    if server_url:
        try:
            doc["server_url"] = check_server_url(server_url)
        except ValueError as exc:
            raise ConfigError(target, "server_url", f"{exc} (got {server_url!r})") from None
    text = tomlkit.dumps(doc)
    # The same checks the agent makes when it loads the policy, folders included.
    policy = parse_policy(base, tomllib.loads(text))
    merge(policy, UserFile(), {}, target.with_name("agent.toml"), base)
    atomic_write(target, text, mode=0o644)  # every user's agent reads it
    return target


def _parse(path: Path) -> tomlkit.TOMLDocument:
    try:
        return tomlkit.parse(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(path, None, f"cannot be read ({exc.strerror})") from None
    except Exception as exc:  # tomlkit raises several unrelated types for bad TOML
        raise ConfigError(path, None, f"not valid TOML: {exc}") from None
