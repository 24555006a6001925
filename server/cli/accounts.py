"""``dropline-server tenants | users | api-keys``: accounts and their keys.

``api-keys create`` and ``api-keys rotate`` print the key alone on stdout, so a
script can capture it; every other message goes to stderr.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from dropline.server.cli._common import (
    Services,
    add_data_dir,
    emit_json,
    open_services,
    password_from_env_or_prompt,
    say,
)
from dropline.server.identity.accounts import DEFAULT_KEY_SCOPES, parse_duration

if TYPE_CHECKING:
    Sub = argparse._SubParsersAction[argparse.ArgumentParser]


def _lifetime(text: str) -> int | None:
    return None if text == "never" else parse_duration(text)


def register(sub: Sub) -> None:
    tenants = sub.add_parser("tenants", help="manage tenants")
    tsub = tenants.add_subparsers(dest="action", required=True)
    p = tsub.add_parser("create", help="create a tenant")
    add_data_dir(p)
    p.add_argument("name")
    p.set_defaults(func=tenants_create)
    p = tsub.add_parser("list", help="list tenants (JSON)")
    add_data_dir(p)
    p.set_defaults(func=tenants_list)

    users = sub.add_parser("users", help="manage users")
    usub = users.add_subparsers(dest="action", required=True)
    p = usub.add_parser(
        "create", help="create a user (password from DROPLINE_PASSWORD or a prompt)"
    )
    add_data_dir(p)
    p.add_argument("--tenant", required=True)
    p.add_argument("--email", required=True)
    p.add_argument("--admin", action="store_true", help="administrator of the tenant")
    p.add_argument(
        "--super-admin",
        action="store_true",
        help="also manages every tenant and the bans (implies --admin)",
    )
    p.add_argument("--no-password", action="store_true", help="a service account (no sign-in)")
    p.set_defaults(func=users_create)
    p = usub.add_parser("list", help="list a tenant's users (JSON)")
    add_data_dir(p)
    p.add_argument("--tenant", required=True)
    p.set_defaults(func=users_list)
    for name, active in (("disable", False), ("enable", True)):
        p = usub.add_parser(name, help=f"{name} a user (disabling ends their sign-ins)")
        add_data_dir(p)
        p.add_argument("--tenant", required=True)
        p.add_argument("--email", required=True)
        p.set_defaults(func=users_set_active, active=active)

    keys = sub.add_parser("api-keys", help="manage API keys")
    ksub = keys.add_subparsers(dest="action", required=True)
    p = ksub.add_parser("create", help="create an API key; prints it once on stdout")
    add_data_dir(p)
    p.add_argument("--tenant", required=True)
    p.add_argument("--user", required=True, help="the user's email")
    p.add_argument("--scopes", nargs="+", default=list(DEFAULT_KEY_SCOPES))
    p.add_argument("--expires-in", default="90d", help="lifetime such as 90d, 12h; 'never'")
    p.add_argument("--name", default=None)
    p.set_defaults(func=keys_create)
    p = ksub.add_parser("list", help="list a tenant's keys with last use (JSON)")
    add_data_dir(p)
    p.add_argument("--tenant", required=True)
    p.add_argument("--user", help="only this user's keys (email)")
    p.set_defaults(func=keys_list)
    p = ksub.add_parser(
        "rotate", help="a new key with the same user and scopes; the old one lives on until expiry"
    )
    add_data_dir(p)
    p.add_argument("key_id")
    p.add_argument("--tenant", required=True)
    p.add_argument("--expires-in", default="90d", help="the new key's lifetime; 'never'")
    p.add_argument("--old-expires-in", default=None, help="shorten the old key's life, e.g. 7d")
    p.set_defaults(func=keys_rotate)
    p = ksub.add_parser("revoke", help="revoke a key now")
    add_data_dir(p)
    p.add_argument("key_id")
    p.add_argument("--tenant", required=True)
    p.set_defaults(func=keys_revoke)


def tenants_create(args: argparse.Namespace, svc: Services) -> int:
    tenant = svc.admin.create_tenant(svc.actor(None), args.name)
    say(f"created tenant {tenant['name']} ({tenant['id']})")
    return 0


def tenants_list(args: argparse.Namespace, svc: Services) -> int:
    emit_json(svc.admin.list_tenants(svc.actor(None)))
    return 0


def users_create(args: argparse.Namespace, svc: Services) -> int:
    password = None if args.no_password else password_from_env_or_prompt()
    user = svc.admin.create_user(
        svc.actor(args.tenant), args.email, password, admin=args.admin, super_admin=args.super_admin
    )
    say(f"created user {user['email']} ({user['id']})")
    return 0


def users_list(args: argparse.Namespace, svc: Services) -> int:
    emit_json(svc.admin.list_users(svc.actor(args.tenant)))
    return 0


def users_set_active(args: argparse.Namespace, svc: Services) -> int:
    user_id = svc.user_id(args.tenant, args.email)
    svc.admin.update_user(svc.actor(args.tenant), user_id, active=args.active)
    say(f"{'enabled' if args.active else 'disabled'} {args.email}")
    return 0


def keys_create(args: argparse.Namespace, svc: Services) -> int:
    actor = svc.actor(args.tenant)
    user_id = svc.user_id(args.tenant, args.user)
    info, key = svc.admin.create_key(
        actor, user_id, tuple(args.scopes), _lifetime(args.expires_in), args.name
    )
    say(f"created API key {info['id']}; it is shown only once")
    print(key)
    return 0


def keys_list(args: argparse.Namespace, svc: Services) -> int:
    user_id = svc.user_id(args.tenant, args.user) if args.user else None
    emit_json(svc.admin.list_keys(svc.actor(args.tenant), user_id))
    return 0


def keys_rotate(args: argparse.Namespace, svc: Services) -> int:
    old = _lifetime(args.old_expires_in) if args.old_expires_in else None
    info, key = svc.admin.rotate_key(
        svc.actor(args.tenant), args.key_id, _lifetime(args.expires_in), old
    )
    say(f"created API key {info['id']} replacing {args.key_id}; it is shown only once")
    print(key)
    return 0


def keys_revoke(args: argparse.Namespace, svc: Services) -> int:
    svc.admin.revoke_key(svc.actor(args.tenant), args.key_id)
    say(f"revoked API key {args.key_id}")
    return 0


__all__ = ["open_services", "register"]
