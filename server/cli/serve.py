"""``dropline-server serve``: run the server under uvicorn, with TLS and client certificates."""

from __future__ import annotations

import argparse
import socket
import sys
from pathlib import Path

from dropline.server.cli._common import CliError, add_data_dir, settings
from dropline.server.identity.tls import uvicorn_tls_options
from dropline.server.storage.lock import DataDirLock

KEEP_ALIVE_SECONDS = 75  # an idle connection is kept this long (nginx's default too)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    serve = sub.add_parser("serve", help="run the server")
    add_data_dir(serve)
    serve.add_argument("--host", default=None, help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=None, help="port (default 8600; 0 picks one)")
    serve.add_argument("--tls-cert", type=Path, help="PEM certificate chain (TLS 1.2 and 1.3 only)")
    serve.add_argument("--tls-key", type=Path, help="PEM private key")
    serve.add_argument(
        "--client-ca", type=Path, help="CA bundle for client certificates (mutual TLS)"
    )
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    serve.add_argument(
        "--log-format",
        choices=["text", "json"],
        default=None,
        help="log lines as text or one JSON object each (env DROPLINE_LOG_FORMAT)",
    )
    serve.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from dropline.server.http.access_log import configure as configure_logging
    from dropline.server.http.app import create_app
    from dropline.server.http.forwarded import ForwardedScheme
    from dropline.server.http.serving import DroplineServer

    s = settings(
        args,
        host=args.host,
        port=args.port,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        client_ca=args.client_ca,
        log_format=args.log_format,
    )
    if (s.tls_cert is None) != (s.tls_key is None):
        raise CliError("--tls-cert and --tls-key go together")
    if s.client_ca is not None and s.tls_cert is None:
        raise CliError("--client-ca needs --tls-cert and --tls-key")
    # One server per data directory, held until the process ends (a second one, a
    # restore or a migrate is refused with this one's process id).
    s.data_dir.mkdir(parents=True, exist_ok=True)
    lock = DataDirLock(s.data_dir)
    lock.acquire()
    # One handler for our records, uvicorn's and the access log (JSON lines on request).
    configure_logging(s.log_format, args.log_level, access_log=s.access_log)
    app = create_app(s)
    # Bind the socket ourselves so --port 0 can report the port it got.
    family = socket.AF_INET6 if ":" in s.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted connections inherit this; asyncio sets it only on sockets it makes
    # itself, and without it every small response waits ~40 ms for a delayed ACK.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((s.host, s.port))
    port = sock.getsockname()[1]
    scheme = "https" if s.tls_cert else "http"
    host = f"[{s.host}]" if family == socket.AF_INET6 else s.host
    print(f"dropline-server listening on {scheme}://{host}:{port}", file=sys.stderr, flush=True)
    config = uvicorn.Config(
        # uvicorn's own proxy handling would trust any loopback peer and replace the peer
        # address with the client's, so the server could no longer tell that a forwarded
        # client certificate came from its proxy. The trusted proxies decide instead:
        # the scheme here, the client address in RequestContextMiddleware.
        ForwardedScheme(app, s.trusted_proxies),
        proxy_headers=False,
        log_level=args.log_level,
        access_log=False,  # dropline.server.http.access_log writes them, with the request id
        log_config=None,  # logging was configured above
        # Well above any client's idle expiry (the SDK's: 3 s): at uvicorn's 5 s, a
        # client that reused a connection as the server closed it saw a ReadError
        # (bench/many_agents.py, docs/performance.md).
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
        **uvicorn_tls_options(s.tls_cert, s.tls_key, s.client_ca),
    )
    server = DroplineServer(config, app.state.changes.notifier)
    server.run(sockets=[sock])
    lock.release()
    return 0
