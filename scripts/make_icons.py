"""Render the application icon's PNG sizes from its SVG (the one drawn source).

    freezestudio/resources/icons/freezestudio.svg  ->  freezestudio-<N>.png for N in ICON_SIZES

The PNGs are committed (and shipped in the wheel) so that neither the window nor
`freezestudio --install-desktop` needs an SVG renderer at run time.

Usage:
    python scripts/make_icons.py
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, str(REPO))

from PySide6.QtCore import Qt  # noqa: E402
from PySide6.QtGui import QGuiApplication, QImage, QPainter  # noqa: E402
from PySide6.QtSvg import QSvgRenderer  # noqa: E402

from freezestudio.resources import ICON_SIZES, ICON_SVG, icon_png  # noqa: E402


def render(size: int) -> QImage:
    """The SVG drawn on a transparent `size` x `size` image."""
    image = QImage(size, size, QImage.Format.Format_ARGB32)
    image.fill(Qt.GlobalColor.transparent)
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    QSvgRenderer(str(ICON_SVG)).render(painter)
    painter.end()
    return image


def main() -> None:
    _app = QGuiApplication.instance() or QGuiApplication(sys.argv[:1])
    for size in ICON_SIZES:
        path = icon_png(size)
        if not render(size).save(str(path), "PNG"):
            raise SystemExit(f"cannot write {path}")
        print(f"wrote {path.relative_to(REPO)}")


if __name__ == "__main__":
    main()
