"""Render the SVG icons in assets/ to PNGs for every size the platforms ask for.

Writes ``assets/png/<name>-<size>.png`` (and ``@2x``), copies the same files
into ``ui/icons/`` where the tray loads them, and draws a contact sheet of the
tray icons on a light and a dark panel for reviewing them by eye.

    python -m tools.render_icons [--sheet PATH]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ASSETS = ROOT / "assets"
PNG_DIR = ASSETS / "png"
PACKAGE_ICONS = ROOT / "ui" / "icons"
SIZES = (16, 22, 24, 32, 48, 64, 128, 256)
# Panel colours of common desktops: a light panel (GNOME/Windows light) and a dark one.
PANELS = (("#f3f3f3", "light"), ("#202124", "dark"))


def _qt() -> None:
    # Rendering needs a QGuiApplication but never a screen.
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtGui import QGuiApplication

    if QGuiApplication.instance() is None:
        QGuiApplication(sys.argv[:1])


def render(svg: Path, pixels: int) -> object:
    """One SVG rendered into a transparent square QImage of ``pixels`` pixels."""
    from PySide6.QtCore import QRectF, Qt
    from PySide6.QtGui import QImage, QPainter
    from PySide6.QtSvg import QSvgRenderer

    renderer = QSvgRenderer(str(svg))
    if not renderer.isValid():
        raise SystemExit(f"{svg}: not a valid SVG")
    image = QImage(pixels, pixels, QImage.Format.Format_ARGB32_Premultiplied)
    image.fill(Qt.GlobalColor.transparent)
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
    renderer.render(painter, QRectF(0, 0, pixels, pixels))
    painter.end()
    return image


def render_all() -> list[Path]:
    PNG_DIR.mkdir(parents=True, exist_ok=True)
    PACKAGE_ICONS.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for svg in sorted(ASSETS.glob("*.svg")):
        for size in SIZES:
            for scale, suffix in ((1, ""), (2, "@2x")):
                out = PNG_DIR / f"{svg.stem}-{size}{suffix}.png"
                image = render(svg, size * scale)
                if not image.save(str(out), "PNG"):  # type: ignore[attr-defined]
                    raise SystemExit(f"could not write {out}")
                shutil.copyfile(out, PACKAGE_ICONS / out.name)
                written.append(out)
        shutil.copyfile(svg, PACKAGE_ICONS / svg.name)
    return written


def contact_sheet(path: Path) -> None:
    """Every tray icon at every size, at 1:1 and magnified, on both panels."""
    from PySide6.QtCore import QPoint, QRect, Qt
    from PySide6.QtGui import QColor, QFont, QImage, QPainter

    icons = [*sorted(ASSETS.glob("tray-*.svg")), ASSETS / "dropline.svg"]
    small = (16, 22, 24, 32, 48, 64)
    zoom = 4  # nearest-neighbour magnification of the 16 and 22 px renders
    label_w, row_h, gap = 150, 96, 14
    width = label_w + sum(small) + gap * len(small) + (16 + 22) * zoom + gap * 3
    height = row_h * len(icons)
    sheet = QImage(width * 2, height, QImage.Format.Format_ARGB32)
    painter = QPainter(sheet)
    font = QFont()
    font.setPixelSize(13)
    painter.setFont(font)
    for band, (colour, _name) in enumerate(PANELS):
        x0 = band * width
        painter.fillRect(QRect(x0, 0, width, height), QColor(colour))
        painter.setPen(QColor("#202124" if band == 0 else "#e8eaed"))
        for row, svg in enumerate(icons):
            y = row * row_h
            painter.drawText(
                QRect(x0 + 10, y, label_w - 10, row_h),
                Qt.AlignmentFlag.AlignVCenter,
                svg.stem.removeprefix("tray-"),
            )
            x = x0 + label_w
            for size in small:
                image = QImage(str(PNG_DIR / f"{svg.stem}-{size}.png"))
                painter.drawImage(QPoint(x, y + (row_h - size) // 2), image)
                x += size + gap
            x += gap
            for size in (16, 22):
                image = QImage(str(PNG_DIR / f"{svg.stem}-{size}.png"))
                big = image.scaled(size * zoom, size * zoom)  # nearest neighbour
                painter.drawImage(QPoint(x, y + (row_h - size * zoom) // 2), big)
                x += size * zoom + gap
    painter.end()
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(str(path), "PNG")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sheet", type=Path, default=PNG_DIR / "contact-sheet.png")
    args = parser.parse_args(argv)
    _qt()
    written = render_all()
    contact_sheet(args.sheet)
    print(f"wrote {len(written)} PNGs to {PNG_DIR.relative_to(ROOT)} and {args.sheet}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
