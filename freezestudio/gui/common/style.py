"""Colours and icons of the tree states, drawn at run time, readable in light and dark themes.

Row tints are the palette's base colour blended with a hue, so they keep the theme's
contrast with the text; icons carry the same meaning in shape as well as colour.
"""

from __future__ import annotations

import math
from functools import cache

from PySide6.QtCore import QPointF, QRectF, QSize, Qt
from PySide6.QtGui import QColor, QIcon, QPainter, QPainterPath, QPalette, QPen, QPixmap, QPolygonF
from PySide6.QtWidgets import QApplication

from freezestudio.resources import ICON_SIZES, icon_png

FROZEN = "frozen"
TRAINABLE = "trainable"
PARTIAL = "partial"
NO_GRADIENT = "no_gradient"
RECEIVES = "receives"
STOP = "stop"
BN_INFERENCE = "bn_inference"
WARNING = "warning"

HUES = {
    FROZEN: QColor(64, 140, 230),
    TRAINABLE: QColor(46, 160, 67),
    PARTIAL: QColor(120, 150, 200),
    NO_GRADIENT: QColor(230, 140, 20),
    RECEIVES: QColor(46, 160, 67),
    STOP: QColor(210, 50, 50),
    WARNING: QColor(230, 140, 20),
    "match": QColor(240, 200, 0),
}


def is_dark(palette: QPalette | None = None) -> bool:
    palette = palette or QApplication.palette()
    return palette.color(QPalette.ColorRole.Base).lightness() < 128


def blend(base: QColor, hue: QColor, amount: float) -> QColor:
    return QColor(
        round(base.red() + (hue.red() - base.red()) * amount),
        round(base.green() + (hue.green() - base.green()) * amount),
        round(base.blue() + (hue.blue() - base.blue()) * amount),
    )


def tint(kind: str, palette: QPalette | None = None) -> QColor:
    """The row background for a state: the base colour blended with the state's hue."""
    palette = palette or QApplication.palette()
    base = palette.color(QPalette.ColorRole.Base)
    amount = {"match": 0.45, FROZEN: 0.16, NO_GRADIENT: 0.22}.get(kind, 0.16)
    if is_dark(palette):
        amount *= 1.6
    return blend(base, HUES[kind], amount)


def _canvas(size: int = 32) -> tuple[QPixmap, QPainter]:
    pixmap = QPixmap(size, size)
    pixmap.fill(Qt.GlobalColor.transparent)
    painter = QPainter(pixmap)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    return pixmap, painter


def _snowflake(p: QPainter, s: float) -> None:
    c = s / 2
    p.setPen(QPen(HUES[FROZEN].darker(115), s * 0.09, Qt.PenStyle.SolidLine,
                  Qt.PenCapStyle.RoundCap))
    for k in range(3):
        a = math.pi / 3 * k + math.pi / 2
        dx, dy = math.cos(a) * s * 0.42, math.sin(a) * s * 0.42
        p.drawLine(QPointF(c - dx, c - dy), QPointF(c + dx, c + dy))
        for sign in (1, -1):
            tip = QPointF(c + sign * dx * 0.62, c + sign * dy * 0.62)
            for turn in (0.6, -0.6):
                b = a + turn + (0 if sign > 0 else math.pi)
                p.drawLine(tip, QPointF(tip.x() + math.cos(b) * s * 0.16,
                                        tip.y() + math.sin(b) * s * 0.16))


def _dot(p: QPainter, s: float, color: QColor) -> None:
    p.setPen(QPen(color.darker(130), s * 0.06))
    p.setBrush(color)
    p.drawEllipse(QRectF(s * 0.2, s * 0.2, s * 0.6, s * 0.6))


def _half(p: QPainter, s: float) -> None:
    rect = QRectF(s * 0.16, s * 0.16, s * 0.68, s * 0.68)
    p.setPen(Qt.PenStyle.NoPen)
    p.setBrush(HUES[TRAINABLE])
    p.drawPie(rect, 90 * 16, 180 * 16)
    p.setBrush(HUES[FROZEN])
    p.drawPie(rect, -90 * 16, 180 * 16)
    p.setPen(QPen(QColor(90, 90, 90), s * 0.05))
    p.setBrush(Qt.BrushStyle.NoBrush)
    p.drawEllipse(rect)


def _arrow_down(p: QPainter, s: float) -> None:
    color = HUES[RECEIVES]
    p.setPen(Qt.PenStyle.NoPen)
    p.setBrush(color)
    path = QPainterPath()
    path.addRect(QRectF(s * 0.38, s * 0.12, s * 0.24, s * 0.4))
    path.addPolygon(QPolygonF([QPointF(s * 0.16, s * 0.48), QPointF(s * 0.84, s * 0.48),
                               QPointF(s * 0.5, s * 0.9)]))
    p.drawPath(path.simplified())


def _no_gradient(p: QPainter, s: float) -> None:
    rect = QRectF(s * 0.14, s * 0.14, s * 0.72, s * 0.72)
    p.setPen(QPen(HUES[NO_GRADIENT], s * 0.12))
    p.setBrush(Qt.BrushStyle.NoBrush)
    p.drawEllipse(rect)
    p.drawLine(QPointF(s * 0.27, s * 0.73), QPointF(s * 0.73, s * 0.27))


def _octagon(p: QPainter, s: float) -> None:
    c, r = s / 2, s * 0.44
    points = [QPointF(c + r * math.cos(math.pi / 8 + k * math.pi / 4),
                      c + r * math.sin(math.pi / 8 + k * math.pi / 4)) for k in range(8)]
    p.setPen(QPen(HUES[STOP].darker(140), s * 0.05))
    p.setBrush(HUES[STOP])
    p.drawPolygon(QPolygonF(points))
    p.setPen(QPen(Qt.GlobalColor.white, s * 0.13, Qt.PenStyle.SolidLine, Qt.PenCapStyle.FlatCap))
    p.drawLine(QPointF(s * 0.26, c), QPointF(s * 0.74, c))


def _warning(p: QPainter, s: float) -> None:
    p.setPen(QPen(HUES[WARNING].darker(140), s * 0.05))
    p.setBrush(HUES[WARNING])
    p.drawPolygon(QPolygonF([QPointF(s * 0.5, s * 0.08), QPointF(s * 0.94, s * 0.88),
                             QPointF(s * 0.06, s * 0.88)]))
    p.setPen(QPen(Qt.GlobalColor.black, s * 0.1, Qt.PenStyle.SolidLine, Qt.PenCapStyle.RoundCap))
    p.drawLine(QPointF(s * 0.5, s * 0.36), QPointF(s * 0.5, s * 0.6))
    p.drawPoint(QPointF(s * 0.5, s * 0.76))


def _bn(p: QPainter, s: float) -> None:
    _snowflake(p, s)
    p.setPen(QPen(HUES[WARNING].darker(120), s * 0.1))
    p.drawPoint(QPointF(s * 0.85, s * 0.85))


def _undo(p: QPainter, s: float) -> None:
    """A curved arrow pointing back, in a blue readable on light and dark toolbars (the
    style's standard arrows are black: invisible in a dark palette)."""
    color = QColor(47, 128, 237)
    p.setPen(QPen(color, s * 0.13, Qt.PenStyle.SolidLine, Qt.PenCapStyle.RoundCap))
    p.setBrush(Qt.BrushStyle.NoBrush)
    path = QPainterPath(QPointF(s * 0.82, s * 0.8))
    path.cubicTo(QPointF(s * 0.86, s * 0.42), QPointF(s * 0.62, s * 0.32),
                 QPointF(s * 0.34, s * 0.36))
    p.drawPath(path)
    p.setPen(Qt.PenStyle.NoPen)
    p.setBrush(color)
    p.drawPolygon(QPolygonF([QPointF(s * 0.08, s * 0.37), QPointF(s * 0.4, s * 0.12),
                             QPointF(s * 0.4, s * 0.62)]))


def _redo(p: QPainter, s: float) -> None:
    p.translate(s, 0)
    p.scale(-1, 1)
    _undo(p, s)


_PAINTERS = {
    FROZEN: _snowflake,
    TRAINABLE: lambda p, s: _dot(p, s, HUES[TRAINABLE]),
    PARTIAL: _half,
    NO_GRADIENT: _no_gradient,
    RECEIVES: _arrow_down,
    STOP: _octagon,
    WARNING: _warning,
    BN_INFERENCE: _bn,
    "undo": _undo,
    "redo": _redo,
    "blank": lambda p, s: None,
}


@cache
def icon(kind: str) -> QIcon:
    """A state icon drawn with QPainter (cached; needs a QGuiApplication)."""
    result = QIcon()
    for size in (16, 32, 64):
        pixmap, painter = _canvas(size)
        _PAINTERS[kind](painter, float(size))
        painter.end()
        result.addPixmap(pixmap)
    return result


@cache
def app_icon() -> QIcon:
    """The application icon: the packaged PNG sizes (`resources.ICON_SIZES`), drawn from
    `resources.ICON_SVG` by `scripts/make_icons.py`."""
    result = QIcon()
    for size in ICON_SIZES:
        result.addFile(str(icon_png(size)), QSize(size, size))
    return result


def pixmap(kind: str, size: int = 16) -> QPixmap:
    return icon(kind).pixmap(size, size)
