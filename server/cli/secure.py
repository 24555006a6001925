"""``dropline-server clients | policies | bans | certs | signing-keys | audit``.

Secrets (client secrets) are printed once on stdout; everything else as JSON or a
line on stderr. ``audit verify`` exits 2 when the hash chain is broken.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import select

from dropline.server.audit import trail
from dropline.server.cli._common import CliError, Services, add_data_dir, emit_json, say
from dropline.server.guard.defender import Defender
from dropline.server.identity.accounts import DEFAULT_KEY_SCOPES
from dropline.server.identity.key_table import signing_keys_for
from dropline.server.identity.tokens import SigningKeys
from dropline.server.storage import schema
from dropline.server.storage.encryption import ENV_MASTER_KEY, TenantKeys, load_master_key

if TYPE_CHECKING:
    Sub = argparse._SubParsersAction[argparse.ArgumentParser]


def _cmd(
    parent: Sub, name: str, help: str, func: object, tenant: bool = False
) -> argparse.ArgumentParser:
    p = parent.add_parser(name, help=help)
    add_data_dir(p)
    if tenant:
        p.add_argument("--tenant", required=True)
    p.set_defaults(func=func)
    return p


def register(sub: Sub) -> None:
    clients = sub.add_parser("clients", help="manage OAuth clients").add_subparsers(
        dest="action", required=True
    )
    p = _cmd(
        clients,
        "create",
        "register a client; prints its id and secret once (JSON)",
        clients_create,
        True,
    )
    p.add_argument("--name", required=True)
    p.add_argument(
        "--grant-types",
        nargs="+",
        required=True,
        help="client_credentials, authorization_code, refresh_token, device code URN",
    )
    p.add_argument("--scopes", nargs="+", default=list(DEFAULT_KEY_SCOPES))
    p.add_argument("--redirect-uri", action="append", default=[], help="exact redirect URI")
    p.add_argument("--public", action="store_true", help="no secret (PKCE clients)")
    p.add_argument("--service-user", help="email of the user a client_credentials client acts as")
    _cmd(clients, "list", "list a tenant's clients (JSON)", clients_list, True)
    p = _cmd(
        clients, "revoke", "revoke a client and every sign-in through it", clients_revoke, True
    )
    p.add_argument("client_id")

    policies = sub.add_parser("policies", help="manage access policies").add_subparsers(
        dest="action", required=True
    )
    p = _cmd(
        policies, "show", "print the tenant's (or a user's) policy (JSON)", policies_show, True
    )
    p.add_argument("--user", help="a user's own policy (email)")
    p = _cmd(policies, "set", "replace the policy with a JSON document", policies_set, True)
    p.add_argument("--user", help="a user's own policy (email)")
    p.add_argument("file", help="JSON file, or - for stdin")
    p = _cmd(policies, "clear", "remove the policy", policies_clear, True)
    p.add_argument("--user", help="a user's own policy (email)")

    bans = sub.add_parser("bans", help="addresses banned by the defender").add_subparsers(
        dest="action", required=True
    )
    _cmd(bans, "list", "list bans (JSON)", bans_list)
    p = _cmd(bans, "lift", "lift the ban on an address", bans_lift)
    p.add_argument("ip")

    certs = sub.add_parser("certs", help="client certificates (mutual TLS)").add_subparsers(
        dest="action", required=True
    )
    p = _cmd(certs, "map", "map a client certificate to a service user", certs_map, True)
    p.add_argument("--user", required=True, help="the service user's email")
    p.add_argument("--cert", required=True, type=Path, help="PEM certificate file")
    p.add_argument("--scopes", nargs="+", default=list(DEFAULT_KEY_SCOPES))
    _cmd(certs, "list", "list a tenant's mapped certificates (JSON)", certs_list, True)
    p = _cmd(certs, "revoke", "stop accepting a certificate", certs_revoke, True)
    p.add_argument("cert_id")

    keys = sub.add_parser("signing-keys", help="the keys that sign access tokens").add_subparsers(
        dest="action", required=True
    )
    _cmd(keys, "list", "list signing keys (JSON)", keys_list)
    _cmd(keys, "rotate", "make a new signing key current; older keys keep verifying", keys_rotate)
    p = _cmd(
        keys, "retire", "stop publishing an old key (tokens it signed stop working)", keys_retire
    )
    p.add_argument("kid")

    enc = sub.add_parser("encryption", help="encryption at rest per tenant").add_subparsers(
        dest="action", required=True
    )
    _cmd(
        enc,
        "enable",
        "seal the tenant's new uploads with its own data key",
        encryption_enable,
        True,
    )
    _cmd(enc, "status", "which tenants have a data key (JSON)", encryption_status)

    aud = sub.add_parser("audit", help="the audit trail").add_subparsers(
        dest="action", required=True
    )
    _cmd(
        aud,
        "verify",
        "check the hash chain; exit 2 when a row was altered or removed",
        audit_verify,
    )
    p = _cmd(aud, "export", "write the audit trail to stdout", audit_export)
    p.add_argument("--tenant", help="only this tenant's rows")
    p.add_argument("--format", choices=["ndjson", "csv"], default="ndjson")
    p = _cmd(
        aud,
        "prune",
        "delete rows older than the retention period (the chain stays verifiable)",
        audit_prune,
    )
    p.add_argument(
        "--days", type=int, help="retention in days (default DROPLINE_AUDIT_RETENTION_DAYS or 365)"
    )


def clients_create(args: argparse.Namespace, svc: Services) -> int:
    service_user = svc.user_id(args.tenant, args.service_user) if args.service_user else None
    info, secret = svc.admin.create_client(
        svc.actor(args.tenant),
        args.name,
        tuple(args.grant_types),
        tuple(args.scopes),
        tuple(args.redirect_uri),
        not args.public,
        service_user,
    )
    say(f"created client {info['client_id']}; the secret is shown only once")
    emit_json({"client_id": info["client_id"], "client_secret": secret})
    return 0


def clients_list(args: argparse.Namespace, svc: Services) -> int:
    emit_json(svc.admin.list_clients(svc.actor(args.tenant)))
    return 0


def clients_revoke(args: argparse.Namespace, svc: Services) -> int:
    svc.admin.revoke_client(svc.actor(args.tenant), args.client_id)
    say(f"revoked client {args.client_id}")
    return 0


def _user(args: argparse.Namespace, svc: Services) -> str | None:
    return svc.user_id(args.tenant, args.user) if args.user else None


def policies_show(args: argparse.Namespace, svc: Services) -> int:
    emit_json(svc.admin.get_policy(svc.actor(args.tenant), _user(args, svc)))
    return 0


def policies_set(args: argparse.Namespace, svc: Services) -> int:
    text = sys.stdin.read() if args.file == "-" else Path(args.file).read_text(encoding="utf-8")
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CliError(f"{args.file}: not JSON ({exc.msg} at line {exc.lineno})") from exc
    emit_json(svc.admin.set_policy(svc.actor(args.tenant), doc, _user(args, svc)))
    return 0


def policies_clear(args: argparse.Namespace, svc: Services) -> int:
    svc.admin.set_policy(svc.actor(args.tenant), None, _user(args, svc))
    say("policy removed")
    return 0


def _defender(svc: Services) -> Defender:
    return Defender(svc.db)


def bans_list(args: argparse.Namespace, svc: Services) -> int:
    emit_json([b.as_json() for b in _defender(svc).bans()])
    return 0


def bans_lift(args: argparse.Namespace, svc: Services) -> int:
    if not _defender(svc).lift(args.ip):
        raise CliError(f"no ban for {args.ip}")
    with svc.db.write() as conn:
        trail.record(conn, svc.actor(None).ctx, "admin.ban.lift", "success", f"ip:{args.ip}")
    say(f"lifted the ban on {args.ip}")
    return 0


def certs_map(args: argparse.Namespace, svc: Services) -> int:
    from dropline.server.guard.security import Security

    pem = args.cert.read_text(encoding="utf-8")
    security = Security(svc.settings, svc.db, svc.identity)
    row = svc.admin.map_certificate(
        svc.actor(args.tenant),
        security,
        svc.user_id(args.tenant, args.user),
        pem,
        tuple(args.scopes),
    )
    emit_json(row)
    return 0


def certs_list(args: argparse.Namespace, svc: Services) -> int:
    emit_json(svc.admin.list_certificates(svc.actor(args.tenant)))
    return 0


def certs_revoke(args: argparse.Namespace, svc: Services) -> int:
    svc.admin.revoke_certificate(svc.actor(args.tenant), args.cert_id)
    say(f"revoked client certificate {args.cert_id}")
    return 0


def _keys(svc: Services) -> SigningKeys:
    return signing_keys_for(svc.settings.data_dir, svc.db)


def keys_list(args: argparse.Namespace, svc: Services) -> int:
    emit_json(
        [
            {"kid": k.kid, "created_at": k.created_at, "current": k.current}
            for k in _keys(svc).list()
        ]
    )
    return 0


def keys_rotate(args: argparse.Namespace, svc: Services) -> int:
    try:
        kid = _keys(svc).rotate()
    except ValueError as exc:
        raise CliError(str(exc)) from exc
    with svc.db.write() as conn:
        trail.record(conn, svc.actor(None).ctx, "admin.signing_key.rotate", "success", f"kid:{kid}")
    say(f"signing key {kid} is now current; older keys keep verifying until retired")
    return 0


def keys_retire(args: argparse.Namespace, svc: Services) -> int:
    try:
        _keys(svc).retire(args.kid)
    except ValueError as exc:
        raise CliError(str(exc)) from exc
    with svc.db.write() as conn:
        trail.record(
            conn, svc.actor(None).ctx, "admin.signing_key.retire", "success", f"kid:{args.kid}"
        )
    say(f"retired signing key {args.kid}")
    return 0


def encryption_enable(args: argparse.Namespace, svc: Services) -> int:
    tenant_id = svc.tenant_id(args.tenant)
    keys = TenantKeys(svc.db, svc.settings.data_dir)
    if keys.enable(tenant_id):
        with svc.db.write() as conn:
            trail.record(
                conn,
                svc.actor(args.tenant).ctx,
                "admin.encryption.enable",
                "success",
                f"tenant:{tenant_id}",
                tenant_id=tenant_id,
            )
        say(f"encryption at rest is on for {args.tenant}: new uploads are sealed")
    else:
        say(f"encryption at rest was already on for {args.tenant}")
    return 0


def encryption_status(args: argparse.Namespace, svc: Services) -> int:
    with svc.db.read() as conn:
        rows = conn.execute(
            select(schema.tenants.c.name, schema.tenant_keys.c.created_at).join(
                schema.tenant_keys, schema.tenant_keys.c.tenant_id == schema.tenants.c.id
            )
        ).all()
    emit_json(
        {
            "master_key": "environment"
            if os.environ.get(ENV_MASTER_KEY)
            else ("file" if load_master_key(svc.settings.data_dir) else "none"),
            "tenants": [{"tenant": r.name, "since": r.created_at} for r in rows],
        }
    )
    return 0


def audit_verify(args: argparse.Namespace, svc: Services) -> int:
    report = trail.verify_chain(svc.db)
    if report.ok:
        say(f"audit chain intact: {report.rows} rows, head {report.head}")
        return 0
    say(
        f"audit chain BROKEN at row {report.first_bad_seq}: {report.problem} "
        f"({report.rows} rows verified before it)"
    )
    return 2


def audit_export(args: argparse.Namespace, svc: Services) -> int:
    tenant_id = svc.tenant_id(args.tenant) if args.tenant else None
    with svc.db.read() as conn:
        rows = trail.iter_rows(conn, tenant_id)
        if args.format == "csv":
            writer = csv.DictWriter(
                sys.stdout, fieldnames=list(trail.PUBLIC_FIELDS), lineterminator="\n"
            )
            writer.writeheader()
            for row in rows:
                writer.writerow({**row, "detail": json.dumps(row["detail"], separators=(",", ":"))})
        else:
            for row in rows:
                print(json.dumps(row, separators=(",", ":")))
    return 0


def audit_prune(args: argparse.Namespace, svc: Services) -> int:
    days = args.days if args.days is not None else svc.settings.audit_retention_days
    if days < 1:
        raise CliError("--days must be at least 1")
    count = trail.prune(svc.db, days)
    say(f"pruned {count} audit rows older than {days} days")
    return 0
