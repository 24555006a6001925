"""Shared CLI plumbing: data directory, opening the services, the operator as audit actor."""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dropline.server.admin.service import Actor, Admin
from dropline.server.audit import trail
from dropline.server.identity.accounts import Identity, IdentityError
from dropline.server.identity.oauth.store import OAuthStore
from dropline.server.settings import Settings
from dropline.server.storage.db import Database
from dropline.server.storage.migrations import migrate


class CliError(Exception):
    """One readable line for stderr; exit status 1."""


def add_data_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", type=Path, help="data directory (env DROPLINE_DATA_DIR)")


def settings(args: argparse.Namespace, **extra: object) -> Settings:
    return Settings.from_env(data_dir=getattr(args, "data_dir", None), **extra)


@dataclass
class Services:
    settings: Settings
    db: Database
    identity: Identity
    store: OAuthStore
    admin: Admin

    def actor(self, tenant: str | None) -> Actor:
        """The operator at this terminal, acting in ``tenant`` (by name) as super-admin."""
        tenant_id = self.tenant_id(tenant) if tenant else ""
        ctx = trail.AuditContext(
            actor=f"cli:{getpass.getuser()}", credential_kind="cli", source_ip="local"
        )
        return Actor(ctx, tenant_id, super_admin=True)

    def tenant_id(self, name: str) -> str:
        try:
            return self.identity.tenant_id(name)
        except IdentityError as exc:
            raise CliError(str(exc)) from exc

    def user_id(self, tenant: str, email: str) -> str:
        try:
            return self.identity.user_id(self.tenant_id(tenant), email)
        except IdentityError as exc:
            raise CliError(str(exc)) from exc


def open_services(args: argparse.Namespace) -> Services:
    s = settings(args)
    s.data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(s.database_url)
    migrate(db)
    identity = Identity(db)
    store = OAuthStore(db)
    return Services(s, db, identity, store, Admin(db, identity, store))


def password_from_env_or_prompt() -> str:
    pw = os.environ.get("DROPLINE_PASSWORD")
    if pw:
        return pw
    if not sys.stdin.isatty():
        raise CliError("set DROPLINE_PASSWORD or run in a terminal to be prompted")
    first = getpass.getpass("Password: ")
    if first != getpass.getpass("Repeat password: "):
        raise CliError("the passwords do not match")
    return first


def say(message: str) -> None:
    print(message, file=sys.stderr)


def emit_json(data: Any) -> None:
    print(json.dumps(data, indent=2, sort_keys=True, default=str))
