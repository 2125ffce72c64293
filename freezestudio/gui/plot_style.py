"""Shared look of the training plots: theme-aware pyqtgraph widgets and a colour cycle."""

from __future__ import annotations

import pyqtgraph as pg
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QApplication

# colour-blind friendly cycle (Okabe-Ito), used for per-layer lines
CYCLE = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442",
         "#000000"]


def palette_colors() -> tuple[QColor, QColor]:
    """(background, foreground) from the application palette."""
    palette = QApplication.palette()
    return (palette.color(QPalette.ColorRole.Base), palette.color(QPalette.ColorRole.Text))


def make_plot(title: str, left: str, bottom: str = "step") -> pg.PlotWidget:
    """A PlotWidget with the palette's colours, a grid, and no mouse-wheel zoom surprises
    (the view follows the data until the user pans or zooms; double-click auto-ranges)."""
    background, foreground = palette_colors()
    widget = pg.PlotWidget(background=background)
    item = widget.getPlotItem()
    item.setTitle(title, color=foreground.name(), size="9pt")
    for name in ("left", "bottom"):
        axis = item.getAxis(name)
        axis.setPen(pg.mkPen(foreground))
        axis.setTextPen(pg.mkPen(foreground))
    item.setLabel("left", left, color=foreground.name())
    item.setLabel("bottom", bottom, color=foreground.name())
    item.showGrid(x=True, y=True, alpha=0.15)
    item.setMenuEnabled(False)
    widget.setMinimumSize(220, 160)
    return widget


def layer_color(index: int) -> QColor:
    return QColor(CYCLE[index % len(CYCLE)])
