"""``make package`` step "debs": ``dropline_<version>_amd64.deb`` (workstation) and
``dropline-server_<version>_amd64.deb``, laid out from the bundles in ``dist/`` and the
files in ``packaging/`` and built with ``dpkg-deb`` (no debhelper needed).
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.metadata
import os
import re
import shutil
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tools import elf

ROOT = Path(__file__).resolve().parent.parent
PACKAGING = ROOT / "packaging"
DEBIAN = PACKAGING / "debian"
SYSTEMD = PACKAGING / "systemd"
POLICY_TEMPLATE = PACKAGING / "policy" / "policy.toml"
ICONS = ROOT / "ui" / "icons"
APP_SVG = ROOT / "assets" / "dropline.svg"

MAINTAINER = "Dropline Packaging <packaging@dropline.dev>"
HOMEPAGE = "https://dropline.dev"
ICON_SIZES = (16, 22, 24, 32, 48, 64, 128, 256)
# xz, as lintian refuses zstd members. Level 1 on two threads: the workstation package
# in about 20 s; level 3 is 4% smaller for twice the time, level 6 14% for four times.
COMPRESSION = ("-Zxz", "-z1", "--threads-max=2")

# What the bundles take from the system rather than carry: the C library, and the
# graphics libraries PyInstaller leaves out so the machine's own drivers are used.
# A library missing from both the bundle and this table fails the build, so a new
# system dependency is never shipped without its Depends.
SYSTEM_LIBRARIES = {
    "ld-linux-x86-64.so.2": "libc6",
    "libc.so.6": "libc6",
    "libdl.so.2": "libc6",
    "libm.so.6": "libc6",
    "libpthread.so.0": "libc6",
    "libresolv.so.2": "libc6",
    "librt.so.1": "libc6",
    "libEGL.so.1": "libegl1",
    "libGL.so.1": "libgl1",
    "libxcb.so.1": "libxcb1",
}


class BuildError(Exception):
    """A package cannot be built; the message says why in one line."""


@dataclass(frozen=True, slots=True)
class Package:
    name: str  # the Debian package, and its folder in packaging/debian/
    bundle: str  # the folder in dist/, installed as /opt/<bundle>
    commands: tuple[str, ...]  # executables of the bundle linked into /usr/bin
    depends: tuple[str, ...]  # beyond the shared libraries
    unit: str  # the systemd unit in packaging/systemd/
    unit_dir: str  # where it is installed


WORKSTATION = Package(
    name="dropline",
    bundle="dropline",
    commands=("dropline-agent", "dropline-tray"),
    depends=(),
    unit="dropline-agent.service",
    unit_dir="usr/lib/systemd/user",
)
SERVER = Package(
    name="dropline-server",
    bundle="dropline-server",
    commands=("dropline-server",),
    depends=("adduser",),
    unit="dropline-server.service",
    unit_dir="usr/lib/systemd/system",
)
PACKAGES = (WORKSTATION, SERVER)


def say(message: str) -> None:
    print(f"debs: {message}", file=sys.stderr, flush=True)


def build(dist: Path) -> list[Path]:
    """Build both packages into ``dist``; returns the .deb files."""
    version = importlib.metadata.version("dropline")
    try:
        check_changelog(version)
        return [build_package(p, dist, version) for p in PACKAGES]
    except BuildError as exc:
        raise SystemExit(f"debs: {exc}") from None


def deb_path(dist: Path, package: Package, version: str) -> Path:
    return dist / f"{package.name}_{version}_amd64.deb"


def check_changelog(version: str) -> None:
    first = (DEBIAN / "changelog").read_text(encoding="utf-8").splitlines()[0]
    match = re.match(r"\S+ \(([^)]+)\)", first)
    if match is None or match.group(1) != version:
        raise BuildError(
            f"packaging/debian/changelog starts with {first!r}, but pyproject.toml says "
            f"{version}: add an entry for {version} at the top"
        )


def build_package(package: Package, dist: Path, version: str) -> Path:
    bundle = dist / package.bundle
    for command in package.commands:
        if not (bundle / command).is_file():
            raise BuildError(f"{bundle / command} is missing: build the bundles first")
    started = time.monotonic()
    stage = dist / ".deb-stage" / package.name
    out = deb_path(dist, package, version)
    for old in dist.glob(f"{package.name}_*_amd64.deb"):
        old.unlink()
    shutil.rmtree(stage, ignore_errors=True)
    try:
        lay_out(package, bundle, stage)
        write_control(package, bundle, stage, version)
        dpkg_deb(stage, out)
    finally:
        shutil.rmtree(stage.parent, ignore_errors=True)
    say(f"{out.name}: {out.stat().st_size / 1024**2:.1f} MiB in {time.monotonic() - started:.1f} s")
    return out


def dpkg_deb(stage: Path, out: Path) -> None:
    try:
        result = subprocess.run(
            ["dpkg-deb", "--root-owner-group", *COMPRESSION, "--build", str(stage), str(out)],
            capture_output=True,
            text=True,
            check=False,
        )
    except FileNotFoundError:
        raise BuildError("dpkg-deb is missing: build the packages on Debian or Ubuntu") from None
    if result.returncode != 0:
        out.unlink(missing_ok=True)
        reason = (result.stderr.strip().splitlines() or ["no message"])[-1]
        raise BuildError(f"dpkg-deb could not build {out.name}: {reason}")


# -- the file system of a package ------------------------------------------------------------


def lay_out(package: Package, bundle: Path, stage: Path) -> None:
    opt = stage / "opt" / package.bundle
    shutil.copytree(bundle, opt, symlinks=True)
    normalise_modes(opt, package.commands)
    try:
        for path in elf_files(opt):
            elf.drop_runpath(path)
    except elf.ElfError as exc:
        raise BuildError(str(exc)) from None
    for command in package.commands:
        # Absolute, as Debian policy wants for links between top-level directories.
        link(stage / "usr" / "bin" / command, f"/opt/{package.bundle}/{command}")
    put(SYSTEMD / package.unit, stage / package.unit_dir / package.unit)
    doc = stage / "usr" / "share" / "doc" / package.name
    put_text(doc / "copyright", copyright_text(package))
    put_gzip(DEBIAN / "changelog", doc / "changelog.gz")
    put(DEBIAN / package.name / "README.Debian", doc / "README.Debian")
    overrides = stage / "usr" / "share" / "lintian" / "overrides" / package.name
    put(DEBIAN / package.name / "lintian-overrides", overrides)
    for page in sorted((DEBIAN / package.name).glob("*.1")):
        put_gzip(page, stage / "usr" / "share" / "man" / "man1" / f"{page.name}.gz")
    if package is WORKSTATION:
        lay_out_desktop(stage)
    else:
        put(DEBIAN / package.name / "server.env", stage / "etc" / "dropline" / "server.env", 0o640)
        put(
            ROOT / "packaging" / "nginx" / "dropline-server.conf",
            doc / "nginx-dropline-server.conf",
        )


def lay_out_desktop(stage: Path) -> None:
    here = DEBIAN / WORKSTATION.name
    put(here / "dropline.desktop", stage / "usr/share/applications/dropline.desktop")
    put(here / "dropline-tray.desktop", stage / "etc/xdg/autostart/dropline-tray.desktop")
    put_text(stage / "etc/dropline/policy.toml", commented_policy())
    hicolor = stage / "usr/share/icons/hicolor"
    for size in ICON_SIZES:
        put(ICONS / f"dropline-{size}.png", hicolor / f"{size}x{size}/apps/dropline.png")
        put(ICONS / f"dropline-{size}@2x.png", hicolor / f"{size}x{size}@2/apps/dropline.png")
    put(APP_SVG, hicolor / "scalable/apps/dropline.svg")


POLICY_HEADER = """\
# Dropline policy: the settings IT sets for every user of this machine.
# Installed by the dropline package with every setting commented out, so it
# changes nothing until you edit it; your edits are kept on upgrades.
# Uncomment a setting (remove the '#' before its name) and change its value.
# The agent rereads this file when it changes. Keys (never in this file) go in
# the agent's service environment: see /usr/share/doc/dropline/README.Debian.

"""
_SETTING = re.compile(r"^(\[|[A-Za-z_][A-Za-z0-9_]*\s*=)")


def commented_policy() -> str:
    """The policy template with each setting and table commented out as ``#key = ...``."""
    lines = []
    for line in POLICY_TEMPLATE.read_text(encoding="utf-8").splitlines():
        lines.append(f"#{line}" if _SETTING.match(line) else line)
    return POLICY_HEADER + "\n".join(lines) + "\n"


def copyright_text(package: Package) -> str:
    extra_file = DEBIAN / package.name / "copyright-extra"
    extra = extra_file.read_text(encoding="utf-8") if extra_file.exists() else ""
    template = (DEBIAN / "copyright.in").read_text(encoding="utf-8")
    return template.format(
        maintainer=MAINTAINER,
        homepage=HOMEPAGE,
        bundle=f"opt/{package.bundle}",
        extra=extra.format(bundle=f"opt/{package.bundle}"),
    )


def normalise_modes(tree: Path, executables: tuple[str, ...]) -> None:
    """0755 for the bundle's programs and folders, 0644 for the rest (shared libraries too,
    as Debian policy asks), whatever modes the build machine's umask left."""
    for path in walk(tree):
        if path.is_symlink():
            continue
        if path.is_dir():
            path.chmod(0o755)
        else:
            program = path.parent == tree and path.name in executables
            path.chmod(0o755 if program else 0o644)


def walk(tree: Path) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(tree):
        base = Path(dirpath)
        for name in (*dirnames, *filenames):
            yield base / name


def put(src: Path, dest: Path, mode: int = 0o644) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dest)
    dest.chmod(mode)


def put_text(dest: Path, text: str) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(text, encoding="utf-8")
    dest.chmod(0o644)


def put_gzip(src: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    # mtime=0 and no file name inside: the same input gives the same bytes (gzip -9n).
    with open(dest, "wb") as raw, gzip.GzipFile("", "wb", 9, raw, mtime=0) as gz:
        gz.write(src.read_bytes())
    dest.chmod(0o644)


def link(path: Path, target: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.symlink_to(target)


# -- DEBIAN/ -----------------------------------------------------------------------------------


def write_control(package: Package, bundle: Path, stage: Path, version: str) -> None:
    control = stage / "DEBIAN"
    control.mkdir(mode=0o755)
    template = (DEBIAN / package.name / "control").read_text(encoding="utf-8")
    depends = ", ".join((*library_depends(bundle), *package.depends))
    put_text(
        control / "control",
        template.format(
            version=version,
            maintainer=MAINTAINER,
            homepage=HOMEPAGE,
            installed_size=installed_size(stage),
            depends=depends,
        ),
    )
    conffiles = sorted(
        "/" + str(p.relative_to(stage)) for p in walk(stage / "etc") if not p.is_dir()
    )
    put_text(control / "conffiles", "".join(f"{c}\n" for c in conffiles))
    put_text(control / "md5sums", md5sums(stage, set(conffiles)))
    for script in ("preinst", "postinst", "prerm", "postrm"):
        source = DEBIAN / package.name / script
        if source.exists():
            put(source, control / script, 0o755)


def payload(stage: Path) -> Iterator[Path]:
    """What the package installs: the stage without DEBIAN/."""
    return (p for p in walk(stage) if p.relative_to(stage).parts[0] != "DEBIAN")


def installed_size(stage: Path) -> int:
    """In KiB, counted as dpkg-gencontrol does: each file rounded up, one per other entry."""
    total = 0
    for path in payload(stage):
        st = path.lstat()
        total += -(-st.st_size // 1024) if stat.S_ISREG(st.st_mode) else 1
    return total


def md5sums(stage: Path, conffiles: set[str]) -> str:
    lines = []
    for path in sorted(payload(stage)):
        rel = str(path.relative_to(stage))
        if path.is_symlink() or not path.is_file() or "/" + rel in conffiles:
            continue
        digest = hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest()
        lines.append(f"{digest}  {rel}\n")
    return "".join(lines)


def library_depends(bundle: Path) -> list[str]:
    """The Depends for the shared libraries the bundle's ELF files need and do not carry."""
    carried = {p.name for p in walk(bundle)}
    elves = elf_files(bundle)
    try:
        wanted = elf.needed(elves) - carried
    except elf.ElfError as exc:
        raise BuildError(str(exc)) from None
    missing = sorted(wanted - SYSTEM_LIBRARIES.keys())
    if missing:
        raise BuildError(
            f"the bundle {bundle.name} needs {', '.join(missing)}, which it does not carry "
            "and tools/debs.py's SYSTEM_LIBRARIES does not map to a Debian package"
        )
    glibc = elf.glibc_floor(elves)
    packages = sorted({SYSTEM_LIBRARIES[n] for n in wanted})
    return [f"{p} (>= {glibc})" if p == "libc6" else p for p in packages]


def elf_files(tree: Path) -> list[Path]:
    return [p for p in walk(tree) if p.is_file() and not p.is_symlink() and elf.is_elf(p)]


__all__ = ["PACKAGES", "SERVER", "WORKSTATION", "Package", "build", "deb_path"]
