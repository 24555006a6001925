"""``dropline-agent``: a thin command line over the control socket (and over the config file
when the agent is stopped). Errors are one line on stderr and a documented exit code.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from dropline import __version__
from dropline.agent import cli_undo
from dropline.agent.cli_text import CliError, size_text
from dropline.agent.config import ConfigError, LockedError, NotAllowedError
from dropline.agent.configedit import ConfigEditor
from dropline.agent.control import protocol as p
from dropline.agent.control.client import AgentNotRunning, ControlClient
from dropline.agent.paths import AgentPaths

PROG = "dropline-agent"

# Exit codes (docs/deployment.md and --help list them).
OK = 0
FAILED = 1
USAGE = 2
CONFIG_INVALID = 3
NOT_RUNNING = 4
ALREADY_RUNNING = 5
POLICY = 6
SIGNED_OUT = 7
INTERRUPTED = 130

EXIT_CODES = (
    (OK, "done (also when the reader of the output stops early, as with | head)"),
    (FAILED, "the operation failed (the message says why); doctor found a problem"),
    (USAGE, "bad command line"),
    (CONFIG_INVALID, "the config or policy file is invalid"),
    (NOT_RUNNING, "the agent is not running (for commands that need it)"),
    (ALREADY_RUNNING, "another agent is already running for this home"),
    (POLICY, "refused by the administrator's policy"),
    (SIGNED_OUT, "sign-in failed or no credential"),
    (INTERRUPTED, "interrupted"),
)

_CODE_EXITS = {
    p.UNAVAILABLE: FAILED,
    p.LOCKED: POLICY,
    p.NOT_ALLOWED: POLICY,
    p.INVALID: FAILED,
    p.NOT_FOUND: FAILED,
    p.CONFLICT: FAILED,
}


Command = Callable[[argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    def options(default: Any) -> argparse.ArgumentParser:
        opts = argparse.ArgumentParser(add_help=False)
        opts.add_argument(
            "--home", type=Path, default=default, help="the agent's home (env DROPLINE_AGENT_HOME)"
        )
        opts.add_argument(
            "--config", type=Path, default=default, help="config file (default: HOME/agent.toml)"
        )
        return opts

    # Accepted before or after the command; SUPPRESS keeps a subcommand's default from
    # overwriting a value given before it.
    common = options(argparse.SUPPRESS)
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="The Dropline sync agent",
        parents=[options(None)],
        epilog="exit codes:\n" + "\n".join(f"  {code:<4} {text}" for code, text in EXIT_CODES),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, help_text: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help_text, description=help_text, parents=[common])

    run = add("run", "run the agent in the foreground (the service)")
    run.add_argument(
        "--verbose", "-v", action="store_true", help="also log to the console, with debug lines"
    )
    run.add_argument(
        "--log-format", choices=["text", "json"], default="text", help="log file format"
    )

    status = add("status", "show what the agent is doing")
    status.add_argument("--json", action="store_true", help="print JSON")

    for name, text in (
        ("pause", "pause syncing (one folder, or all)"),
        ("resume", "resume syncing (one folder, or all)"),
        ("sync-now", "scan local folders and check the server now"),
    ):
        cmd = add(name, text)
        cmd.add_argument("folder", nargs="?", help="a sync folder's local path (default: all)")

    folders = add("folders", "list, add or remove sync folders")
    fsub = folders.add_subparsers(dest="action", required=True, metavar="ACTION")
    flist = fsub.add_parser("list", help="list sync folders", parents=[common])
    flist.add_argument("--json", action="store_true", help="print JSON")
    fadd = fsub.add_parser("add", help="add a sync folder", parents=[common])
    fadd.add_argument("local", help="the local directory (created if missing)")
    fadd.add_argument("--remote", required=True, help="the server path, such as /reports")
    fadd.add_argument(
        "--mode", choices=["two-way", "upload-only", "download-only"], default="two-way"
    )
    fadd.add_argument(
        "--ignore", action="append", default=[], help="an extra ignore pattern (repeatable)"
    )
    fadd.add_argument("--after-upload", choices=["keep", "archive", "remove"], default="keep")
    fadd.add_argument("--archive-dir", help="where archived files go (after-upload archive)")
    frm = fsub.add_parser("remove", help="stop syncing a folder (its files stay)", parents=[common])
    frm.add_argument("local")

    history = add("history", "show recent transfers")
    history.add_argument("--json", action="store_true", help="print JSON")
    history.add_argument("--limit", type=int, default=20, help="how many rows (1-1000, default 20)")

    issues = add("issues", "show problems that need attention")
    issues.add_argument("--json", action="store_true", help="print JSON")

    login = add("login", "sign in (browser, device code, or an API key from stdin)")
    how = login.add_mutually_exclusive_group()
    how.add_argument("--device", action="store_true", help="sign in on another device with a code")
    how.add_argument(
        "--api-key", action="store_true", help="read an API key from stdin into the keyring"
    )

    add("logout", "sign out: revoke the sign-in at the server and clear the keyring")

    doctor = add("doctor", "check the setup and print a fix for each problem")
    doctor.add_argument("--json", action="store_true", help="print JSON")

    auto = add("autostart", "start the agent at login (systemd user unit)")
    auto.add_argument("action", choices=["enable", "disable", "status"])

    policy = add("policy", "the machine's policy file (for administrators and installers)")
    psub = policy.add_subparsers(dest="action", required=True, metavar="ACTION")
    pinstall = psub.add_parser(
        "install",
        help="validate and write the policy file (the Windows MSI runs this)",
        parents=[common],
    )
    # Empty values count as not given: an installer passes its properties even when unset.
    pinstall.add_argument("--server-url", default="", help="set server_url in the policy")
    pinstall.add_argument(
        "--from", dest="source", default="", help="a policy file to install (validated first)"
    )
    cli_undo.add_parsers(sub, common)
    return parser


def _paths(args: argparse.Namespace) -> AgentPaths:
    return AgentPaths.resolve(args.home, args.config)


def _client(paths: AgentPaths) -> ControlClient:
    return ControlClient(paths.socket)


def _out(text: str = "") -> None:
    print(text, flush=True)


def _json_out(obj: Any) -> None:
    print(json.dumps(obj, indent=2, ensure_ascii=False), flush=True)


# -- commands -------------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    from dropline.agent import logs
    from dropline.agent.instance import AlreadyRunning
    from dropline.agent.service import AgentService

    paths = _paths(args)
    paths.ensure()
    log_file = logs.setup(paths.logs, json_lines=args.log_format == "json", verbose=args.verbose)
    service = AgentService(paths)
    try:
        asyncio.run(service.run())
    except AlreadyRunning as exc:
        raise CliError(str(exc), ALREADY_RUNNING) from None
    except ConfigError as exc:
        raise CliError(str(exc), CONFIG_INVALID) from None
    if args.verbose:
        print(f"stopped; log: {log_file}", file=sys.stderr)
    return OK


def cmd_status(args: argparse.Namespace) -> int:
    with _client(_paths(args)) as c:
        status = c.call("status")
    if args.json:
        _json_out(status)
        return OK
    line = f"Dropline agent: {status['state'].replace('_', ' ')}"
    if status.get("server_url"):
        if not status.get("signed_in"):
            line += f" (server {status['server_url']})"
        elif status.get("account"):
            line += f" (signed in as {status['account']} to {status['server_url']})"
        else:
            line += f" (signed in to {status['server_url']})"
    _out(line)
    for f in status["folders"]:
        extra = f", {f['pending']} pending" if f["pending"] else ""
        _out(f"  {f['local']} -> {f['remote']}  [{f['mode']}]  {f['state']}{extra}")
    if not status["folders"]:
        _out("  no sync folders: add one with 'dropline-agent folders add LOCAL --remote PATH'")
    if status["issues"]:
        _out(f"{status['issues']} issue(s): see 'dropline-agent issues'")
    return OK


def _folder_cmd(op: str, done: str) -> Command:
    def command(args: argparse.Namespace) -> int:
        with _client(_paths(args)) as c:
            c.call(op, {"folder": args.folder} if args.folder else None)
        _out(f"{done} {args.folder or 'all folders'}")
        return OK

    return command


def cmd_folders(args: argparse.Namespace) -> int:
    paths = _paths(args)
    if args.action == "list":
        try:
            with _client(paths) as c:
                result = c.call("folders.list")
            folders = result["folders"]
        except AgentNotRunning:
            folders = [f.to_json() for f in ConfigEditor(paths.config).current().folders]
        if args.json:
            _json_out(folders)
        elif not folders:
            _out("no sync folders")
        for f in folders if not args.json else []:
            lock = "  (managed by your administrator)" if f["locked"] else ""
            _out(f"{f['local']} -> {f['remote']}  [{f['mode']}]{lock}")
        return OK
    if args.action == "add":
        entry: dict[str, Any] = {
            "local": str(Path(args.local).expanduser().absolute()),
            "remote": args.remote,
            "mode": args.mode,
            "ignore": args.ignore,
            "after_upload": args.after_upload,
            "archive_dir": str(Path(args.archive_dir).expanduser().absolute())
            if args.archive_dir
            else None,
        }
        try:
            with _client(paths) as c:
                folder = c.call("folders.add", {k: v for k, v in entry.items() if v is not None})[
                    "folder"
                ]
            _out(f"added {folder['local']} -> {folder['remote']} [{folder['mode']}]; syncing")
        except AgentNotRunning:
            _config, added = ConfigEditor(paths.config).add_folder(entry)
            Path(added.local).mkdir(parents=True, exist_ok=True)
            _out(
                f"added {added.local} -> {added.remote} [{added.mode}] to {paths.config}; "
                "it syncs when the agent starts"
            )
        return OK
    local = str(Path(args.local).expanduser().absolute())
    try:
        with _client(paths) as c:
            c.call("folders.remove", {"local": local})
    except AgentNotRunning:
        ConfigEditor(paths.config).remove_folder(local)
    _out(f"removed {local} (its files are left in place)")
    return OK


def cmd_history(args: argparse.Namespace) -> int:
    if not 1 <= args.limit <= 1000:
        raise CliError("--limit must be from 1 to 1000", USAGE)
    with _client(_paths(args)) as c:
        rows = c.call("history.query", {"limit": args.limit})["rows"]
    if args.json:
        _json_out(rows)
        return OK
    if not rows:
        _out("no transfers yet")
    for r in rows:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r["time"]))
        arrow = "up  " if r["direction"] == "up" else "down"
        err = f"  ({r['error']})" if r.get("error") else ""
        size = size_text(r["size"])
        where = _join(r["folder"], r["path"])
        _out(f"{when}  {arrow}  {r['result']:<8} {size:>9}  {where}{err}")
    return OK


def _join(folder: str, path: str) -> str:
    """A file's place for people: the local folder joined with the path inside it."""
    if not folder:
        return path
    return f"{folder.rstrip('/')}/{path.lstrip('/')}"


def cmd_issues(args: argparse.Namespace) -> int:
    with _client(_paths(args)) as c:
        issues = c.call("issues.list")["issues"]
    if args.json:
        _json_out(issues)
        return OK
    if not issues:
        _out("no issues")
    for i in issues:
        where = _join(i["folder"], i["path"])
        _out(f"[{i['id']}] {i['kind']}: {where}\n    {i['message']}\n    fix: {i['hint']}")
    return OK


def cmd_login(args: argparse.Namespace) -> int:
    paths = _paths(args)
    if args.api_key:
        return _login_api_key(paths)
    try:
        client = _client(paths)
        with client:
            state = client.call("signin.start", {"device": True} if args.device else None)
            _show_signin(state, args.device)
            while state["state"] == "pending":
                time.sleep(1)
                state = client.call("signin.state")
    except AgentNotRunning:
        state = asyncio.run(_login_here(paths, args.device))
    if state["state"] != "signed_in":
        raise CliError(f"sign-in failed: {state.get('error') or state['state']}", SIGNED_OUT)
    _out("signed in")
    return OK


def _show_signin(state: dict[str, Any], device: bool) -> None:
    if device:
        _out(f"On any device, open {state['url']}\nand enter the code: {state['user_code']}")
    else:
        _out(f"Your browser should open to sign in. If it does not, open:\n{state['url']}")
    _out("Waiting for the sign-in to finish...")


async def _login_here(paths: AgentPaths, device: bool) -> dict[str, Any]:
    """Sign in without a running agent: the refresh token goes to the keyring for its next start."""
    import webbrowser

    import httpx

    from dropline.agent.credentials import CredentialStore, NoKeyringError
    from dropline.agent.signin import BrowserSignIn, DeviceSignIn, SignInError

    url = ConfigEditor(paths.config).current().server_url
    if not url:
        raise CliError("set server_url in the config before signing in", CONFIG_INVALID)
    store = CredentialStore(url)
    if not store.status().usable:
        raise CliError(str(store.status().problem), SIGNED_OUT)
    async with httpx.AsyncClient(timeout=30.0) as http:
        try:
            if device:
                flow = DeviceSignIn(http, url)
                code = await flow.start()
                _show_signin(
                    {
                        "url": code.verification_uri_complete or code.verification_uri,
                        "user_code": code.user_code,
                    },
                    True,
                )
                tokens = await flow.finish()
            else:
                browser = BrowserSignIn(http, url)
                auth_url = await browser.start()
                _show_signin({"url": auth_url}, False)
                await asyncio.get_running_loop().run_in_executor(None, webbrowser.open, auth_url)
                tokens = await browser.finish()
            store.save_refresh_token(tokens.refresh_token)
        except (SignInError, NoKeyringError) as exc:
            return {"state": "failed", "error": str(exc)}
    return {"state": "signed_in"}


def _login_api_key(paths: AgentPaths) -> int:
    from dropline.agent.credentials import CredentialStore

    url = ConfigEditor(paths.config).current().server_url
    if not url:
        raise CliError("set server_url in the config before storing a key", CONFIG_INVALID)
    # Never from argv: command lines are visible to every user of the machine.
    key = getpass.getpass("API key: ") if sys.stdin.isatty() else sys.stdin.readline()
    key = key.strip()
    if not key:
        raise CliError("no API key was given on stdin", USAGE)
    CredentialStore(url).save_api_key(key)
    _out("API key stored in the keyring; restart the agent or run 'dropline-agent sync-now'")
    return OK


def cmd_logout(args: argparse.Namespace) -> int:
    from dropline.agent.credentials import CredentialStore
    from dropline.agent.signin import sign_out

    paths = _paths(args)
    try:
        with _client(paths) as c:
            c.call("signout")
    except AgentNotRunning:
        config = ConfigEditor(paths.config).current()
        if not config.allow_sign_out:
            raise CliError("signing out is turned off by your administrator", POLICY) from None
        if config.server_url:
            asyncio.run(sign_out(CredentialStore(config.server_url), config.server_url))
    _out("signed out")
    return OK


def cmd_doctor(args: argparse.Namespace) -> int:
    from dropline.agent.doctor import run_checks

    checks = run_checks(_paths(args))
    if args.json:
        _json_out([c.to_json() for c in checks])
    else:
        for c in checks:
            _out(c.line())
    return OK if all(c.ok for c in checks) else FAILED


def cmd_autostart(args: argparse.Namespace) -> int:
    from dropline.agent import autostart

    paths = _paths(args)
    if args.action == "enable":
        unit = autostart.enable(paths, args.home, args.config)
        _out(f"installed and enabled {unit}")
    elif args.action == "disable":
        removed = autostart.disable(paths)
        _out(f"disabled and removed {removed}" if removed else "autostart was not enabled")
    else:
        unit = autostart.unit_path(paths)
        _out(f"enabled ({unit})" if unit.exists() else "not enabled")
    return OK


def cmd_policy(args: argparse.Namespace) -> int:
    from dropline.agent.config import default_policy_path
    from dropline.agent.policyinstall import install_policy

    if not args.server_url and not args.source:
        raise CliError("give --server-url URL, --from FILE, or both", USAGE)
    target = default_policy_path()
    source = Path(args.source) if args.source else None
    try:
        install_policy(target, args.server_url or None, source)
    except PermissionError:
        raise CliError(f"cannot write {target}: run this as an administrator", FAILED) from None
    _out(f"wrote {target}")
    return OK


COMMANDS: dict[str, Command] = {
    "run": cmd_run,
    "status": cmd_status,
    "pause": _folder_cmd("pause", "paused"),
    "resume": _folder_cmd("resume", "resumed"),
    "sync-now": _folder_cmd("sync_now", "checking now:"),
    "folders": cmd_folders,
    "history": cmd_history,
    "issues": cmd_issues,
    "login": cmd_login,
    "logout": cmd_logout,
    "doctor": cmd_doctor,
    "autostart": cmd_autostart,
    "policy": cmd_policy,
    **cli_undo.COMMANDS,
}


def main(argv: Sequence[str] | None = None) -> int:
    try:
        try:
            return _main(argv)
        finally:
            # Inside the try: a reader that went away shows up here, not at exit.
            sys.stdout.flush()
    except BrokenPipeError:
        # `dropline-agent history | head -1`: the reader has what it wanted, so this is
        # no error. Later writes, and the interpreter's last flush, go to devnull
        # (Python's documentation, "Note on SIGPIPE").
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return OK


def _main(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except CliError as exc:
        return _fail(str(exc), exc.code)
    except AgentNotRunning as exc:
        return _fail(exc.message, NOT_RUNNING)
    except p.ControlError as exc:
        key = exc.details.get("key")
        message = f"{key}: {exc.message}" if key and exc.code == p.LOCKED else exc.message
        return _fail(message, _CODE_EXITS.get(exc.code, FAILED))
    except (LockedError, NotAllowedError) as exc:
        return _fail(str(exc), POLICY)
    except ConfigError as exc:
        return _fail(str(exc), CONFIG_INVALID)
    except KeyboardInterrupt:
        return _fail("interrupted", INTERRUPTED)
    except BrokenPipeError:
        raise  # the reader left: main() ends quietly
    except OSError as exc:
        return _fail(f"{exc.strerror or exc}{f': {exc.filename}' if exc.filename else ''}", FAILED)


def _fail(message: str, code: int) -> int:
    print(f"{PROG}: {message}", file=sys.stderr, flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
