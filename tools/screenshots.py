"""Screenshots of the tray app for the docs, taken from a real server, agent and tray.

Starts Xvfb, a server on loopback, an agent with two sync folders and some work
(uploads, a download, a file name the server refuses, an upload in progress), then
the tray on that display, and saves framed PNGs into docs/screenshots/.

    python -m tools.screenshots [--out DIR] [--keep]
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import gc
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "screenshots"
EMAIL = "ann@example.com"
# Debian packages for Xvfb and Qt's xcb platform; only this script needs them.
DEBIAN_PACKAGES = (
    "xvfb",
    "libxcb-cursor0",
    "libxcb-icccm4",
    "libxcb-keysyms1",
    "libxcb-image0",
    "libxcb-render-util0",
    "libxcb-xkb1",
    "libxkbcommon-x11-0",
    "libxcb-shape0",
    "libxcb-randr0",
    "libegl1",
    "libfontconfig1",
)

# Files the office drops into "Reports": (name, size in KiB).
REPORTS = (
    ("Q3 board pack.pdf", 2300),
    ("Invoice 2025-0142.pdf", 180),
    ("Invoice 2025-0143.pdf", 176),
    ("Budget 2026 draft.xlsx", 640),
    ("Staff rota November.docx", 95),
    ("Minutes 2025-11-20.docx", 48),
    ("Supplier contract - Northwind.pdf", 1200),
    ("Logo refresh/logo-dark.svg", 36),
    ("Logo refresh/logo-light.svg", 35),
    ("Logo refresh/brand guide.pdf", 3100),
)
INBOX = (("Signed contract - Northwind.pdf", 1250), ("Payroll summary October.pdf", 210))
REFUSED = "Q4 plan\\draft.docx"  # a backslash: the server cannot take this name
BIG = ("Site survey photos.zip", 48 * 1024)


def log(message: str) -> None:
    print(f"screenshots: {message}", file=sys.stderr, flush=True)


# -- the machine ---------------------------------------------------------------------------


def ensure_debian_packages() -> None:
    missing = [
        pkg
        for pkg in DEBIAN_PACKAGES
        if subprocess.run(["dpkg", "-s", pkg], capture_output=True, check=False).returncode
    ]
    if not missing:
        return
    if os.geteuid() != 0:
        raise SystemExit(
            "screenshots need Debian packages: "
            + " ".join(missing)
            + "\n  sudo apt-get install "
            + " ".join(missing)
        )
    log(f"installing {' '.join(missing)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", *missing],
        check=True,
        env=env,
        stdout=subprocess.DEVNULL,
    )


@contextlib.contextmanager
def xvfb() -> Iterator[str]:
    """A private X display; Xvfb picks a free number and tells us through a pipe."""
    read_fd, write_fd = os.pipe()
    proc = subprocess.Popen(
        ["Xvfb", "-displayfd", str(write_fd), "-screen", "0", "1600x1100x24", "-nolisten", "tcp"],
        pass_fds=(write_fd,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(write_fd)
    with os.fdopen(read_fd) as pipe:
        number = pipe.readline().strip()
    if not number:
        proc.kill()
        raise SystemExit("Xvfb did not start")
    try:
        yield f":{number}"
    finally:
        _stop(proc)


def _stop(proc: subprocess.Popen[Any]) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def _python(*args: str) -> list[str]:
    return [sys.executable, *args]


@contextlib.contextmanager
def server(data: Path) -> Iterator[tuple[str, str]]:
    """A server on 127.0.0.1 (port picked by the system); yields (url, api key)."""
    env = {**os.environ, "DROPLINE_PASSWORD": "correct horse battery staple"}
    run = lambda *a: subprocess.run(  # noqa: E731
        _python("-m", "dropline.server.cli", *a, "--data-dir", str(data)),
        check=True,
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
    )
    run("tenants", "create", "acme")
    run("users", "create", "--tenant", "acme", "--email", EMAIL)
    key = run(
        "api-keys",
        "create",
        "--tenant",
        "acme",
        "--user",
        EMAIL,
        "--scopes",
        "files:read",
        "files:write",
    ).stdout.strip()
    proc = subprocess.Popen(
        _python(
            "-m",
            "dropline.server.cli",
            "serve",
            "--data-dir",
            str(data),
            "--port",
            "0",
            "--log-level",
            "warning",
        ),
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env=env,
        cwd=ROOT,
    )
    assert proc.stderr is not None
    url = ""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not url:
        line = proc.stderr.readline()
        if not line:
            break
        match = re.search(r"listening on (\S+)", line)
        if match:
            url = match.group(1)
    if not url:
        _stop(proc)
        raise SystemExit("the server did not start")
    stderr = proc.stderr
    threading.Thread(target=lambda: [None for _ in stderr], daemon=True).start()
    try:
        yield url, key
    finally:
        _stop(proc)


def put_on_server(
    url: str, key: str, path: str, data: bytes, if_rev: str | None = None, agent: str = ""
) -> None:
    """One tus creation-with-upload request: the whole file in the POST (``agent``: the
    User-Agent of the program it stands for)."""
    import httpx

    fields = {"path": path} if if_rev is None else {"path": path, "if_rev": if_rev}
    metadata = ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in fields.items())
    answer = httpx.post(
        f"{url}/api/v1/uploads",
        content=data,
        headers={
            "Authorization": f"Bearer {key}",
            "Tus-Resumable": "1.0.0",
            "Upload-Length": str(len(data)),
            "Upload-Metadata": metadata,
            "Content-Type": "application/offset+octet-stream",
            **({"User-Agent": agent} if agent else {}),
        },
        timeout=60,
    )
    answer.raise_for_status()


def write_file(path: Path, kib: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # Unique contents per file, cheaply: a random head, then zeros.
    with path.open("wb") as out:
        out.write(os.urandom(min(kib, 64) * 1024))
        out.truncate(kib * 1024)


@contextlib.contextmanager
def agent(home: Path, url: str, key: str, folders: dict[str, tuple[Path, str]]) -> Iterator[Path]:
    """The agent with an API key; the policy locks the server address, as IT would."""
    home.mkdir(parents=True)
    lines = []
    for remote, (local, mode) in folders.items():
        local.mkdir(parents=True, exist_ok=True)
        lines += [
            "[[folders]]",
            f'local = "{local}"',
            f'remote = "{remote}"',
            f'mode = "{mode}"',
            "",
        ]
    (home / "agent.toml").write_text("\n".join(lines))
    policy = home.parent / "policy.toml"
    policy.write_text(f'server_url = "{url}"\nlocked = ["server_url"]\n')
    env = {
        **os.environ,
        "DROPLINE_API_KEY": key,
        "DROPLINE_POLICY_FILE": str(policy),
        "BROWSER": "true",
    }
    proc = subprocess.Popen(
        _python("-m", "dropline.agent", "run", "--home", str(home)),
        env=env,
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield home
    finally:
        _stop(proc)


# -- pictures ------------------------------------------------------------------------------


def framed(shot: Any, title: str, dark: bool = False) -> Any:
    """A grabbed widget inside a plain window frame with a soft shadow, for the README."""
    from PySide6.QtCore import QRectF, Qt
    from PySide6.QtGui import QColor, QFont, QImage, QPainter, QPainterPath

    from dropline.ui.icons import app_icon

    ratio = shot.devicePixelRatio()
    w, h = int(shot.width() / ratio), int(shot.height() / ratio)
    margin, bar, radius = 28, 34, 10
    image = QImage(
        int((w + 2 * margin) * ratio),
        int((h + bar + 2 * margin) * ratio),
        QImage.Format.Format_ARGB32_Premultiplied,
    )
    image.setDevicePixelRatio(ratio)
    image.fill(Qt.GlobalColor.transparent)
    p = QPainter(image)
    p.setRenderHint(QPainter.RenderHint.Antialiasing)
    window = QRectF(margin, margin - 6, w, h + bar)
    for i in range(14, 0, -1):  # a cheap shadow: stacked, fading rounded rectangles
        p.setPen(Qt.PenStyle.NoPen)
        p.setBrush(QColor(0, 0, 0, int(5 + (14 - i) * 0.9)))
        p.drawRoundedRect(window.adjusted(-i, -i + 6, i, i + 6), radius + i, radius + i)
    clip = QPainterPath()
    clip.addRoundedRect(window, radius, radius)
    p.setClipPath(clip)
    p.fillRect(window, QColor("#202124" if dark else "#e9eaed"))
    p.drawPixmap(int(window.left()), int(window.top()) + bar, shot)
    p.setClipping(False)
    icon = app_icon().pixmap(18, 18)
    p.drawPixmap(int(window.left()) + 12, int(window.top()) + 8, icon)
    font = QFont()
    font.setPixelSize(13)
    font.setBold(True)
    p.setFont(font)
    p.setPen(QColor("#e8eaed" if dark else "#3c4043"))
    p.drawText(QRectF(window.left(), window.top(), w, bar), Qt.AlignmentFlag.AlignCenter, title)
    p.setPen(QColor(0, 0, 0, 60))
    p.setBrush(Qt.BrushStyle.NoBrush)
    p.drawRoundedRect(window, radius, radius)
    p.end()
    return image


def menu_shot(tray: Any, dark: bool = False) -> Any:
    """The tray menu as it opens under a panel holding the tray icon."""
    from PySide6.QtCore import QPoint, QRectF, Qt
    from PySide6.QtGui import QColor, QImage, QPainter

    from dropline.ui.icons import tray_icon

    menu = tray.menu
    menu.popup(QPoint(200, 60))
    wait(lambda: menu.isVisible(), 5)
    settle(0.3)
    shot = menu.grab()
    menu.hide()
    ratio = shot.devicePixelRatio()
    w, h = int(shot.width() / ratio), int(shot.height() / ratio)
    panel, margin = 30, 26
    width = w + 2 * margin + 60
    image = QImage(
        int(width * ratio),
        int((h + panel + margin + 8) * ratio),
        QImage.Format.Format_ARGB32_Premultiplied,
    )
    image.setDevicePixelRatio(ratio)
    image.fill(QColor("#f6f7f9" if not dark else "#1b1c1f"))
    p = QPainter(image)
    p.setRenderHint(QPainter.RenderHint.Antialiasing)
    p.fillRect(QRectF(0, 0, width, panel), QColor("#2b2d31"))
    icon_x = width - margin - 40
    p.drawPixmap(icon_x, 4, tray_icon(tray.icon_name).pixmap(22, 22))
    p.setPen(QColor("#e8eaed"))
    p.drawText(QRectF(icon_x + 26, 0, 60, panel), Qt.AlignmentFlag.AlignVCenter, "10:42")
    for i in range(8, 0, -1):
        p.setPen(Qt.PenStyle.NoPen)
        p.setBrush(QColor(0, 0, 0, 6 + (8 - i)))
        p.drawRoundedRect(
            QRectF(width - margin - w - i + 8, panel + 2 - i + 3, w + 2 * i, h + 2 * i),
            4 + i,
            4 + i,
        )
    p.drawPixmap(int(width - margin - w + 8), panel + 2, shot)
    p.end()
    return image


def settle(seconds: float) -> None:
    from PySide6.QtWidgets import QApplication

    end = time.monotonic() + seconds
    while time.monotonic() < end:
        QApplication.processEvents()
        time.sleep(0.01)


def wait(predicate: Callable[[], object], timeout: float, what: str = "") -> None:
    from PySide6.QtWidgets import QApplication

    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what or 'the tray'}")
        QApplication.processEvents()
        time.sleep(0.02)


def save(image: Any, name: str, out: Path) -> None:
    path = out / f"{name}.png"
    if not image.save(str(path), "PNG"):
        raise SystemExit(f"could not write {path}")
    log(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")


# -- the scenario --------------------------------------------------------------------------


def take(out: Path, work: Path) -> None:
    from PySide6.QtWidgets import QApplication

    from dropline.ui.app import make_application

    home_dir = Path(os.environ["HOME"])
    reports, inbox = home_dir / "Reports", home_dir / "Inbox"
    for name, kib in REPORTS:
        write_file(reports / name, kib)
    with (
        server(work / "server") as (url, key),
        agent(
            work / "agent",
            url,
            key,
            {"/Reports": (reports, "two-way"), "/Inbox": (inbox, "download-only")},
        ) as home,
    ):
        for name, kib in INBOX:
            put_on_server(url, key, f"/Inbox/{name}", os.urandom(kib * 1024))
        app = make_application("light")
        shoot(out, home, url, key, reports)
        # shoot()'s Qt objects are gone with its frame; collect them while the
        # application still exists (left to interpreter exit, the order may crash).
        gc.collect()
        QApplication.processEvents()
        del app


def shoot(out: Path, home: Path, url: str, key: str, reports: Path) -> None:
    from PySide6.QtWidgets import QApplication

    from dropline.agent.control import ControlClient
    from dropline.agent.paths import AgentPaths
    from dropline.ui.app import apply_theme, dark_palette
    from dropline.ui.controller import TrayApp
    from dropline.ui.workers import AgentLink, LinkOptions
    from tools.shots_undo import shoot_undo

    app = QApplication.instance()
    assert isinstance(app, QApplication)
    app.setStyle("Fusion")
    apply_theme(app, "light")
    link = AgentLink(LinkOptions(home=home, start_agent=False, first_delay=0.1))
    tray = TrayApp(link, opener=lambda _p: True, show_tray=False)
    tray.start()
    wait(lambda: link.is_connected, 60, "the agent")
    client = ControlClient(AgentPaths.resolve(home).socket)

    wanted = len(REPORTS) + len(INBOX)
    wait(lambda: len(client.history(limit=100)["rows"]) >= wanted, 180, "the first uploads")
    write_file(reports / REFUSED, 20)
    wait(lambda: tray.issues_model.rowCount() >= 1, 60, "the refused name")
    client.set_setting("bandwidth.upload_kbps", 1024)
    write_file(reports / BIG[0], BIG[1])
    wait(
        lambda: any(t.fraction > 0.15 for t in tray.transfers_model.active()),
        120,
        "the upload in progress",
    )

    transfers = tray.transfers_window()
    transfers.resize(780, 300)
    transfers.bring_up()
    settle(1.0)
    save(framed(transfers.grab(), transfers.windowTitle()), "transfers", out)
    save(menu_shot(tray.tray), "tray-menu", out)

    history = tray.history_window()
    tray.open_history()
    history.resize(1040, 520)
    settle(1.0)
    save(framed(history.grab(), history.windowTitle()), "history", out)

    issues = tray.issues_window()
    tray.open_issues()
    issues.resize(920, 440)
    settle(0.5)
    save(framed(issues.grab(), issues.windowTitle()), "issues", out)

    settings = tray.settings_window()
    tray.open_settings()
    settings.resize(760, 420)
    settle(0.8)
    save(framed(settings.grab(), settings.windowTitle()), "settings", out)
    settings.tabs.setCurrentIndex(1)
    settle(0.3)
    save(framed(settings.grab(), settings.windowTitle()), "settings-network", out)

    signin = tray.signin_window()
    signin.set_server(url)
    signin.show_state({"state": "signed_out", "method": None}, signed_out_before=True)
    signin.bring_up()
    signin.adjustSize()
    settle(0.5)
    save(framed(signin.grab(), signin.windowTitle()), "signin", out)
    signin.show_state(
        {
            "state": "pending",
            "method": "oauth",
            "url": f"{url}/oauth/authorize?client_id=dropline-desktop",
        }
    )
    settle(0.5)
    save(framed(signin.grab(), signin.windowTitle()), "signin-pending", out)
    signin.close()

    shoot_undo(tray, client, url, key, reports, out)

    app.setPalette(dark_palette())
    history.bring_up()
    settle(1.0)
    save(framed(history.grab(), history.windowTitle(), dark=True), "history-dark", out)
    save(menu_shot(tray.tray, dark=True), "tray-menu-dark", out)

    client.close()
    tray.close_windows()
    link.stop(stop_started_agent=False)
    for window in (transfers, history, issues, settings, signin):
        window.deleteLater()
    tray.deleteLater()
    link.deleteLater()
    QApplication.processEvents()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    args = parser.parse_args(argv)
    ensure_debian_packages()
    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="dropline-shots-"))
    # A home of its own, so the windows show "~/Reports" rather than a scratch path.
    os.environ["HOME"] = str(work / "home" / "ann")
    try:
        with xvfb() as display:
            os.environ["DISPLAY"] = display
            os.environ["QT_QPA_PLATFORM"] = "xcb"
            os.environ.pop("WAYLAND_DISPLAY", None)
            take(args.out, work)
    finally:
        if args.keep:
            log(f"scratch kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
