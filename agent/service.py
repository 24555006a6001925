"""``dropline-agent run``: owns the engine, the control server, config reloads, sign-in and signals.

One instance per home (see :mod:`dropline.agent.instance`). Without a server URL or an
accepted credential the agent stays up in the ``signed_out`` state with the
journal's queue kept, and starts the engine as soon as it can.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import os
import signal
import time
import webbrowser
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import httpx

from dropline import __version__
from dropline.agent.config import AgentConfig, ConfigError, FolderConfig
from dropline.agent.configedit import ConfigEditor
from dropline.agent.control import encode
from dropline.agent.control import protocol as p
from dropline.agent.control.server import ControlServer, EventHub, ServerInfo
from dropline.agent.credentials import Credential, CredentialStore, NoKeyringError
from dropline.agent.instance import InstanceLock, sd_notify
from dropline.agent.paths import AgentPaths
from dropline.agent.reload import ConfigWatcher
from dropline.agent.signin import BrowserSignIn, DeviceSignIn, SignInError, Tokens, sign_out
from dropline.agent.undo import UndoOps
from dropline.sync.types import EngineSettings, FolderSpec, HistoryQuery, Issue, State, StateChanged

log = logging.getLogger(__name__)

AGENT_ISSUE_BASE = 1 << 40  # agent-level issues (config problems) never clash with the engine's


class EngineLike(Protocol):
    """The part of ``dropline.sync.engine.Engine`` the agent drives."""

    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    def status(self) -> Any: ...
    def pause(self, local: Path | None = None) -> Any: ...
    def resume(self, local: Path | None = None) -> Any: ...
    def sync_now(self, local: Path | None = None) -> Any: ...
    async def add_folder(self, spec: FolderSpec) -> Any: ...
    async def remove_folder(self, local: Path) -> Any: ...
    def subscribe(self) -> Any: ...
    def history(self, query: HistoryQuery) -> Any: ...
    def issues(self) -> Any: ...
    def retry_issue(self, issue_id: int) -> Any: ...
    def dismiss_issue(self, issue_id: int) -> Any: ...
    def set_bandwidth(self, up_bps: int | None, down_bps: int | None) -> Any: ...
    def client(self) -> Any: ...


EngineFactory = Callable[[Path, Any, Sequence[FolderSpec], EngineSettings], EngineLike]


def default_engine_factory(
    home: Path, client: Any, folders: Sequence[FolderSpec], settings: EngineSettings
) -> EngineLike:
    from dropline.sync.engine import Engine  # imported late: the agent runs signed out without it

    engine: EngineLike = Engine(home, client, folders, settings)
    return engine


async def _call(value: Any) -> Any:
    """Engine methods may be plain or async; the agent awaits either."""
    if inspect.isawaitable(value):
        return await value
    return value


def sdk_credentials(
    cred: Credential, server_url: str, store: CredentialStore, tokens: Tokens | None = None
) -> Any:
    from dropline.sdk import ApiKeyCredentials, OAuthCredentials

    if cred.kind == "api_key":
        return ApiKeyCredentials(cred.secret)

    def persist(refresh: str, _access: str, _expires: float | None) -> None:
        store.save_refresh_token(refresh)

    return OAuthCredentials(
        tokens.access_token if tokens else None,
        cred.secret,
        f"{server_url}/oauth/token",
        "dropline-desktop",
        expires_at=time.time() + tokens.expires_in if tokens and tokens.expires_in else None,
        on_rotate=persist,
    )


class AgentService:
    def __init__(
        self,
        paths: AgentPaths,
        policy_path: Path | None = None,
        engine_factory: EngineFactory = default_engine_factory,
        open_browser: Callable[[str], Any] = webbrowser.open,
    ) -> None:
        self.paths = paths
        self.editor = ConfigEditor(paths.config, policy_path)
        self.engine_factory = engine_factory
        self.open_browser = open_browser
        self.hub = EventHub()
        self.control = ControlServer(
            paths.socket, self.handle, ServerInfo(__version__, str(paths.home)), self.hub
        )
        self.config = AgentConfig()
        self.engine: EngineLike | None = None
        self._client: Any = None
        self._pump: asyncio.Task[None] | None = None
        self._engine_lock = asyncio.Lock()
        self._stop = asyncio.Event()
        self._agent_issues: dict[int, Issue] = {}
        self._issue_seq = 0
        self._signin: dict[str, Any] = {"state": "signed_out", "method": None}
        self._account: str | None = None  # the signed-in user's email, once the server said
        self._account_task: asyncio.Task[None] | None = None
        self._signin_task: asyncio.Task[None] | None = None
        self._watcher: ConfigWatcher | None = None
        self._lock = InstanceLock(paths.lock)
        self.not_running_reason: str | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def request_stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        """Run until SIGTERM/SIGINT or :meth:`request_stop`. Raises AlreadyRunning, ConfigError."""
        self.paths.ensure()
        self._lock.acquire(self.paths.socket)
        try:
            self.config = self.editor.current()
            self._note_refused(self.config)
            await self.control.start()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self._stop.set)
            await self._start_engine_safely()
            self._watcher = ConfigWatcher(
                [self.paths.config, self.editor.policy_path], self._on_config_changed, loop
            )
            self._watcher.start()
            sd_notify("READY=1")
            log.info("agent ready (home %s, pid %s)", self.paths.home, os.getpid())
            await self._stop.wait()
            sd_notify("STOPPING=1")
            log.info("agent stopping")
        finally:
            await self._shutdown()
            self._lock.release()

    async def _shutdown(self) -> None:
        # The signal handlers stay until the end: a repeated SIGTERM while the engine
        # stops must not kill the process before its journal is consistent.
        if self._watcher is not None:
            self._watcher.stop()
        if self._signin_task is not None:
            self._signin_task.cancel()
            with contextlib.suppress(BaseException):
                await self._signin_task
        await self._stop_engine()
        await self.control.stop()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(sig)

    async def _start_engine(self, tokens: Tokens | None = None) -> None:
        async with self._engine_lock:
            await self._stop_engine_locked()
            url = self.config.server_url
            if not url:
                self.not_running_reason = "no server_url is configured"
                self._signin = {"state": "signed_out", "method": None}
                return
            store = CredentialStore(url)
            cred = store.load()
            if cred is None:
                self.not_running_reason = "not signed in"
                self._signin = {"state": "signed_out", "method": None}
                if not store.status().usable and not tokens:
                    log.warning("%s", store.status().problem)
                return
            self._signin = {"state": "signed_in", "method": cred.kind}
            from dropline.sdk import DroplineClient

            agent = f"dropline-agent/{__version__}"  # kept with each revision it publishes
            self._client = DroplineClient(
                url, sdk_credentials(cred, url, store, tokens), user_agent=agent
            )
            engine = self.engine_factory(
                self.paths.state,
                self._client,
                [f.spec() for f in self.config.folders],
                self.config.engine_settings(),
            )
            await engine.start()
            self.engine = engine
            self.not_running_reason = None
            self._signin = {"state": "signed_in", "method": cred.kind}
            self._pump = asyncio.create_task(self._pump_events(engine))
            self._account_task = asyncio.create_task(self._learn_account(self._client))
            log.info("engine started for %s folder(s)", len(self.config.folders))

    async def _learn_account(self, client: Any) -> None:
        """Ask the server who the credential belongs to, for the tray's account name.
        Off the start path: an offline server must not delay syncing from the journal."""
        try:
            me = await client.me()
        except Exception as exc:  # the engine reports the same trouble as its state
            log.info("could not learn the account name: %s", type(exc).__name__)
            return
        self._account = me.email
        self._set_signin({**self._signin, "account": me.email})

    async def _stop_engine(self) -> None:
        async with self._engine_lock:
            await self._stop_engine_locked()

    async def _stop_engine_locked(self) -> None:
        if self._account_task is not None:
            self._account_task.cancel()
            with contextlib.suppress(BaseException):
                await self._account_task
            self._account_task = None
        self._account = None
        if self._pump is not None:
            self._pump.cancel()
            with contextlib.suppress(BaseException):
                await self._pump
            self._pump = None
        if self.engine is not None:
            await self.engine.stop()
            self.engine = None
        if self._client is not None:
            with contextlib.suppress(Exception):
                await self._client.aclose()
            self._client = None

    async def _pump_events(self, engine: EngineLike) -> None:
        sub = engine.subscribe()
        try:
            await self._forward(sub)
        finally:
            unsubscribe = getattr(engine, "unsubscribe", None)
            if unsubscribe is not None:
                unsubscribe(sub)

    async def _forward(self, sub: Any) -> None:
        async for event in sub:
            encoded = encode.event(event)
            if encoded is None:
                continue
            self.hub.publish(*encoded)
            # The server refused the credential (expired, revoked): the queue stays in the
            # journal and the tray is told to offer a new sign-in.
            if (
                isinstance(event, StateChanged)
                and event.folder is None
                and event.state == State.SIGNED_OUT
                and self._signin.get("state") == "signed_in"
            ):
                log.warning("the server no longer accepts the credential; signed out")
                self._set_signin({"state": "signed_out", "method": None, "error": None})

    # -- config ------------------------------------------------------------------------------

    def _on_config_changed(self) -> None:
        asyncio.get_running_loop().create_task(self.reload())

    async def reload(self) -> bool:
        """Load the files again: valid changes apply now; invalid ones keep the last good config."""
        try:
            new = self.editor.current()
        except ConfigError as exc:
            log.warning("config not applied, keeping the last good one: %s", exc)
            self._raise_agent_issue(
                "config-invalid",
                str(exc.file),
                str(exc),
                "Fix the file; it is applied as soon as it is saved.",
            )
            self.hub.publish("config", {"ok": False, "error": str(exc)})
            return False
        self._clear_agent_issues("config-invalid")
        await self._apply(new)
        self.hub.publish("config", {"ok": True, "error": None})
        return True

    async def _apply(self, new: AgentConfig) -> None:
        old, self.config = self.config, new
        self._clear_agent_issues("config-locked")
        self._note_refused(new)
        if (old.server_url, old.concurrency) != (
            new.server_url,
            new.concurrency,
        ) or self.engine is None:
            if old != new or self.engine is None:
                await self._start_engine_safely()
            return
        engine = self.engine
        before = {f.local: f for f in old.folders}
        after = {f.local: f for f in new.folders}
        for local, folder in before.items():
            if local not in after or after[local].spec() != folder.spec():
                await _call(engine.remove_folder(local))
        for local, folder in after.items():
            if local not in before or before[local].spec() != folder.spec():
                folder.local.mkdir(parents=True, exist_ok=True)
                await _call(engine.add_folder(folder.spec()))
        if (old.upload_kbps, old.download_kbps) != (new.upload_kbps, new.download_kbps):
            s = new.engine_settings()
            await _call(engine.set_bandwidth(s.upload_limit_bps, s.download_limit_bps))

    def _note_refused(self, config: AgentConfig) -> None:
        for line in config.refused:
            log.warning("%s", line)
            self._raise_agent_issue(
                "config-locked",
                str(config.file),
                line,
                "Remove the setting from your file; your administrator manages it.",
            )

    def _raise_agent_issue(self, kind: str, path: str, message: str, hint: str) -> None:
        if any(i.kind == kind and i.message == message for i in self._agent_issues.values()):
            return
        self._issue_seq += 1
        issue = Issue(
            AGENT_ISSUE_BASE + self._issue_seq, "", path, kind, message, hint, time.time()
        )
        self._agent_issues[issue.id] = issue
        self.hub.publish("issue_raised", {"issue": encode.issue(issue)})

    def _clear_agent_issues(self, kind: str) -> None:
        for issue_id, issue in list(self._agent_issues.items()):
            if issue.kind == kind:
                del self._agent_issues[issue_id]
                self.hub.publish("issue_cleared", {"id": issue_id})

    # -- the control socket ------------------------------------------------------------------

    async def handle(self, op: str, args: Any) -> dict[str, Any]:
        name = "op_" + op.replace(".", "_")  # versions.*, trash.*, conflicts.*: agent/undo.py
        method = getattr(self, name, None) or getattr(UndoOps(self), name)
        try:
            result: dict[str, Any] = await method(args)
        except ConfigError as exc:
            raise config_control_error(exc) from None
        return result

    def _folder_path(self, folder: str | None) -> Path | None:
        if folder is None:
            return None
        found = self.config.folder(folder)
        if found is None:
            raise p.ControlError(p.NOT_FOUND, f"{folder} is not a sync folder", key="folder")
        return found.local

    def _need_engine(self) -> EngineLike:
        if self.engine is None:
            raise p.ControlError(
                p.UNAVAILABLE, f"the agent is not syncing: {self.not_running_reason}"
            )
        return self.engine

    async def op_status(self, _args: Any) -> dict[str, Any]:
        if self.engine is not None:
            result = encode.status(await _call(self.engine.status()))
        else:
            signed_out = self.not_running_reason in (None, "not signed in")
            state = State.SIGNED_OUT if signed_out and self.config.server_url else State.ERROR
            result = {
                "state": str(state),
                "folders": [
                    {
                        "local": str(f.local),
                        "remote": f.remote,
                        "mode": str(f.mode),
                        "state": str(state),
                        "pending": 0,
                        "last_error": self.not_running_reason,
                    }
                    for f in self.config.folders
                ],
                "issues": 0,
                "uploading": 0,
                "downloading": 0,
                "bytes_left": 0,
            }
        result["issues"] += len(self._agent_issues)
        result["signed_in"] = self.engine is not None and result["state"] != str(State.SIGNED_OUT)
        result["server_url"] = self.config.server_url
        result["account"] = self._account if result["signed_in"] else None
        return result

    async def op_pause(self, args: p.FolderArg) -> dict[str, Any]:
        await _call(self._need_engine().pause(self._folder_path(args.folder)))
        return {}

    async def op_resume(self, args: p.FolderArg) -> dict[str, Any]:
        await _call(self._need_engine().resume(self._folder_path(args.folder)))
        return {}

    async def op_sync_now(self, args: p.FolderArg) -> dict[str, Any]:
        await _call(self._need_engine().sync_now(self._folder_path(args.folder)))
        return {}

    async def op_folders_list(self, _args: Any) -> dict[str, Any]:
        return {
            "folders": [f.to_json() for f in self.config.folders],
            "can_add": self.config.allow_add_folders,
        }

    async def op_folders_add(self, args: p.FolderAddArgs) -> dict[str, Any]:
        new, folder = self.editor.add_folder(args.model_dump())
        await self._apply(new)
        return {"folder": folder.to_json()}

    async def op_folders_remove(self, args: p.FolderRemoveArgs) -> dict[str, Any]:
        new = self.editor.remove_folder(args.local)
        await self._apply(new)
        return {}

    async def op_history_query(self, args: p.HistoryArgs) -> dict[str, Any]:
        if self.engine is None:
            return {"rows": [], "next_before_id": None}
        query = HistoryQuery(**args.model_dump())
        rows = list(await _call(self.engine.history(query)))
        more = len(rows) == args.limit and rows
        return {
            "rows": [encode.history_row(r) for r in rows],
            "next_before_id": rows[-1].id if more else None,
        }

    async def op_issues_list(self, _args: Any) -> dict[str, Any]:
        issues = list(await _call(self.engine.issues())) if self.engine is not None else []
        issues += list(self._agent_issues.values())
        return {"issues": [encode.issue(i) for i in issues]}

    async def op_issues_retry(self, args: p.IssueArgs) -> dict[str, Any]:
        if args.id in self._agent_issues:
            await self.reload()
            return {}
        await _call(self._need_engine().retry_issue(args.id))
        return {}

    async def op_issues_dismiss(self, args: p.IssueArgs) -> dict[str, Any]:
        if self._agent_issues.pop(args.id, None) is not None:
            self.hub.publish("issue_cleared", {"id": args.id})
            return {}
        await _call(self._need_engine().dismiss_issue(args.id))
        return {}

    async def op_settings_get(self, _args: Any) -> dict[str, Any]:
        return {"settings": self.config.settings()}

    async def op_settings_set(self, args: p.SettingsSetArgs) -> dict[str, Any]:
        new = self.editor.set(args.key, args.value)
        await self._apply(new)
        return {"key": args.key, "value": new.value(args.key)}

    # -- sign-in -----------------------------------------------------------------------------

    async def op_signin_state(self, _args: Any) -> dict[str, Any]:
        return dict(self._signin)

    async def op_signin_start(self, args: p.SigninStartArgs) -> dict[str, Any]:
        url = self.config.server_url
        if not url:
            raise p.ControlError(p.INVALID, "set server_url before signing in", key="server_url")
        if (
            self._signin.get("state") == "pending"
            and self._signin_task
            and not self._signin_task.done()
        ):
            return dict(self._signin)
        http = httpx.AsyncClient(timeout=30.0)
        try:
            if args.device:
                device = DeviceSignIn(http, url)
                code = await device.start()
                flow: BrowserSignIn | DeviceSignIn = device
                state = {
                    "state": "pending",
                    "method": "oauth",
                    "url": code.verification_uri_complete or code.verification_uri,
                    "user_code": code.user_code,
                    "error": None,
                }
            else:
                browser = BrowserSignIn(http, url)
                auth_url = await browser.start()
                flow = browser
                state = {
                    "state": "pending",
                    "method": "oauth",
                    "url": auth_url,
                    "user_code": None,
                    "error": None,
                }
                # The browser call can block (a console browser); it must not hold up the reply.
                asyncio.get_running_loop().run_in_executor(None, self.open_browser, auth_url)
        except SignInError as exc:
            await http.aclose()
            raise p.ControlError(p.UNAVAILABLE, str(exc)) from None
        self._set_signin(state)
        self._signin_task = asyncio.create_task(self._finish_signin(flow, http, url))
        return dict(state)

    def _set_signin(self, state: dict[str, Any]) -> None:
        self._signin = state
        self.hub.publish("signin", dict(state))

    async def _finish_signin(
        self, flow: BrowserSignIn | DeviceSignIn, http: httpx.AsyncClient, url: str
    ) -> None:
        try:
            tokens = await flow.finish()
            CredentialStore(url).save_refresh_token(tokens.refresh_token)
        except (SignInError, NoKeyringError) as exc:
            log.warning("sign-in failed: %s", exc)
            self._set_signin({"state": "failed", "method": None, "error": str(exc)})
            return
        finally:
            await http.aclose()
        log.info("signed in with OAuth")
        await self._start_engine_safely(tokens)
        self._set_signin({"state": "signed_in", "method": "oauth", "error": None})

    async def _start_engine_safely(self, tokens: Tokens | None = None) -> None:
        """Start the engine; a failure is logged and shown in status, the agent stays up."""
        try:
            await self._start_engine(tokens)
        except Exception as exc:
            log.exception("the sync engine could not start")
            self.not_running_reason = f"the sync engine could not start: {exc}"

    async def op_signout(self, _args: Any) -> dict[str, Any]:
        if not self.config.allow_sign_out:
            raise p.ControlError(
                p.NOT_ALLOWED,
                "signing out is turned off by your administrator",
                key="allow_sign_out",
            )
        url = self.config.server_url
        if not url:
            return {}
        await sign_out(CredentialStore(url), url)
        await self._stop_engine()
        self.not_running_reason = "not signed in"
        self._set_signin({"state": "signed_out", "method": None, "error": None})
        return {}


def config_control_error(exc: ConfigError) -> p.ControlError:
    from dropline.agent.config import LockedError, NotAllowedError

    if isinstance(exc, LockedError):
        return p.ControlError(p.LOCKED, p.LOCKED_MESSAGE, key=exc.key)
    if isinstance(exc, NotAllowedError):
        return p.ControlError(p.NOT_ALLOWED, exc.problem, key=exc.key)
    if "already a sync folder" in exc.problem or "overlaps" in exc.problem:
        return p.ControlError(p.CONFLICT, str(exc), key=exc.key)
    if "is not a sync folder" in exc.problem:
        return p.ControlError(p.NOT_FOUND, str(exc), key=exc.key)
    return p.ControlError(p.INVALID, str(exc), key=exc.key)


__all__ = ["AgentService", "FolderConfig", "default_engine_factory", "sign_out"]
