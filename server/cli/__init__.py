"""``dropline-server``: serve; administer tenants, users, keys, clients, policies,
bans, client certificates, signing keys and the audit trail; back up, restore, migrate,
sweep.

Messages go to stderr; secrets that are shown once (API keys, client secrets) go
to stdout so a script can capture them. Errors are one readable line and a
non-zero exit. Each command group lives in its own module.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from sqlalchemy.exc import OperationalError

from dropline import __version__
from dropline.server.admin.service import NotFound, Refused
from dropline.server.cli import accounts, backup, import_, migrate, secure, serve, sweep
from dropline.server.cli._common import CliError, open_services
from dropline.server.identity.accounts import IdentityError
from dropline.server.storage.backup import BackupError
from dropline.server.storage.blob_url import InvalidBlobUrl
from dropline.server.storage.encryption import EncryptionError
from dropline.server.storage.lock import DataDirLocked
from dropline.server.storage.migrations import NewerSchema

log = logging.getLogger("dropline.server.cli")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dropline-server", description="Dropline MFT server")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    serve.register(sub)
    accounts.register(sub)
    secure.register(sub)
    backup.register(sub)
    import_.register(sub)
    migrate.register(sub)
    sweep.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        try:
            return _main(argv)
        finally:
            # Inside the try: a reader that went away shows up here, not at exit.
            sys.stdout.flush()
    except BrokenPipeError:
        # `dropline-server audit export | head`: the reader has what it wanted, so this is
        # no error. Later writes, and the interpreter's last flush, go to devnull
        # (Python's documentation, "Note on SIGPIPE").
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _main(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        # serve, backup, restore and migrate open what they need themselves.
        if args.command == "serve" or not getattr(args, "services", True):
            return int(args.func(args))
        return int(args.func(args, open_services(args)))
    except (
        CliError,
        IdentityError,
        Refused,
        PermissionError,
        NewerSchema,
        DataDirLocked,
        BackupError,
        InvalidBlobUrl,
        EncryptionError,
    ) as exc:
        print(f"dropline-server: {exc}", file=sys.stderr)
        return 1
    except NotFound as exc:
        print(f"dropline-server: no such {exc}", file=sys.stderr)
        return 1
    except OperationalError as exc:
        # The driver's own first line (host, port, reason): never the URL, which may
        # carry a password.
        reason = str(exc.orig or exc).strip().splitlines()[0]
        print(f"dropline-server: cannot use the database: {reason}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        raise  # the reader left: main() ends quietly
    except OSError as exc:
        print(
            f"dropline-server: {exc.strerror or exc}: {getattr(exc, 'filename', '') or ''}",
            file=sys.stderr,
        )
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
