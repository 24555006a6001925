"""``dropline-server``: serve, and create tenants, users and API keys.

Messages go to stderr; ``api-keys create`` prints the key alone on stdout so a
script can capture it. Errors are one readable line and a non-zero exit.
"""

from __future__ import annotations

import argparse
import getpass
import logging
import os
import socket
import sys
from collections.abc import Sequence
from pathlib import Path

from server.identity import DEFAULT_KEY_SCOPES, IdentityError, parse_duration
from server.settings import Settings

log = logging.getLogger("server.cli")


def _add_data_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", type=Path, help="data directory (env DROPLINE_DATA_DIR)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dropline-server", description="Dropline MFT server")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the server")
    _add_data_dir(serve)
    serve.add_argument("--host", default=None, help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=None, help="port (default 8600; 0 picks one)")
    serve.add_argument("--tls-cert", type=Path, help="PEM certificate chain")
    serve.add_argument("--tls-key", type=Path, help="PEM private key")
    serve.add_argument("--client-ca", type=Path, help="CA bundle for client certificates (mTLS)")
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])

    tenants = sub.add_parser("tenants", help="manage tenants")
    tsub = tenants.add_subparsers(dest="action", required=True)
    tcreate = tsub.add_parser("create", help="create a tenant")
    _add_data_dir(tcreate)
    tcreate.add_argument("name")

    users = sub.add_parser("users", help="manage users")
    usub = users.add_subparsers(dest="action", required=True)
    ucreate = usub.add_parser(
        "create", help="create a user (password from DROPLINE_PASSWORD or a prompt)"
    )
    _add_data_dir(ucreate)
    ucreate.add_argument("--tenant", required=True)
    ucreate.add_argument("--email", required=True)
    ucreate.add_argument("--admin", action="store_true")

    keys = sub.add_parser("api-keys", help="manage API keys")
    ksub = keys.add_subparsers(dest="action", required=True)
    kcreate = ksub.add_parser("create", help="create an API key; prints it once on stdout")
    _add_data_dir(kcreate)
    kcreate.add_argument("--tenant", required=True)
    kcreate.add_argument("--user", required=True, help="the user's email")
    kcreate.add_argument("--scopes", nargs="+", default=list(DEFAULT_KEY_SCOPES))
    kcreate.add_argument("--expires-in", default="90d", help="lifetime such as 90d, 12h; 'never'")
    kcreate.add_argument("--name", default=None)
    return parser


def _settings(args: argparse.Namespace, **extra: object) -> Settings:
    return Settings.from_env(data_dir=getattr(args, "data_dir", None), **extra)


def _identity(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from server.db import Database
    from server.identity import Identity
    from server.migrations import migrate

    settings = _settings(args)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(settings.database_url)
    migrate(db)
    return Identity(db)


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from server.app import create_app

    settings = _settings(
        args, host=args.host, port=args.port, tls_cert=args.tls_cert, tls_key=args.tls_key,
        client_ca=args.client_ca,
    )
    if (settings.tls_cert is None) != (settings.tls_key is None):
        raise SystemExit("dropline-server: --tls-cert and --tls-key go together")
    app = create_app(settings)
    # Bind the socket ourselves so --port 0 can report the port it got.
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((settings.host, settings.port))
    port = sock.getsockname()[1]
    scheme = "https" if settings.tls_cert else "http"
    host = f"[{settings.host}]" if family == socket.AF_INET6 else settings.host
    print(f"dropline-server listening on {scheme}://{host}:{port}", file=sys.stderr, flush=True)
    config = uvicorn.Config(
        app,
        log_level=args.log_level,
        access_log=False,
        **_tls_options(settings),
    )
    server = uvicorn.Server(config)
    server.run(sockets=[sock])
    return 0


def _tls_options(settings: Settings) -> dict[str, object]:
    if settings.tls_cert is None:
        return {}
    import ssl

    options: dict[str, object] = {
        "ssl_certfile": str(settings.tls_cert),
        "ssl_keyfile": str(settings.tls_key),
        "ssl_version": ssl.PROTOCOL_TLS_SERVER,
    }
    if settings.client_ca is not None:
        options["ssl_ca_certs"] = str(settings.client_ca)
        options["ssl_cert_reqs"] = ssl.CERT_OPTIONAL
    return options


def _password() -> str:
    pw = os.environ.get("DROPLINE_PASSWORD")
    if pw:
        return pw
    if not sys.stdin.isatty():
        raise IdentityError("set DROPLINE_PASSWORD or run in a terminal to be prompted")
    first = getpass.getpass("Password: ")
    if first != getpass.getpass("Repeat password: "):
        raise IdentityError("the passwords do not match")
    return first


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "serve":
            return _serve(args)
        identity = _identity(args)
        if args.command == "tenants":
            tenant_id = identity.create_tenant(args.name)
            print(f"created tenant {args.name} ({tenant_id})", file=sys.stderr)
        elif args.command == "users":
            user_id = identity.create_user(args.tenant, args.email, _password(), admin=args.admin)
            print(f"created user {args.email} ({user_id})", file=sys.stderr)
        elif args.command == "api-keys":
            expires = None if args.expires_in == "never" else parse_duration(args.expires_in)
            key_id, key = identity.create_api_key(
                args.tenant, args.user, tuple(args.scopes), expires, name=args.name
            )
            print(f"created API key {key_id}; it is shown only once", file=sys.stderr)
            print(key)
        return 0
    except IdentityError as exc:
        print(f"dropline-server: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"dropline-server: {exc.strerror or exc}: {getattr(exc, 'filename', '') or ''}",
              file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
