"""Shared look of the training plots: theme-aware pyqtgraph widgets and a colour cycle."""

from __future__ import annotations

import numpy as np
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


def plain_number(value: float) -> str:
    """A tick label in plain digits (0.001, 0.4, 20, 15000); beyond them, 1e-06 style."""
    if not np.isfinite(value) or value <= 0:
        return ""
    if 1e-4 <= value < 1e6:
        return np.format_float_positional(value, precision=3, fractional=False, trim="-")
    return f"{value:.0e}"


class PlainAxis(pg.AxisItem):
    """An axis labelled in the plotted values themselves.

    pyqtgraph's default scales the ticks by an SI multiplier shown beside the label
    ("(x0.001)"), and on a log scale writes powers of ten of the scaled values, so a tick
    "4·10²" meant 0.4. Here there is no multiplier (`enableAutoSIPrefix(False)`), and a
    log axis writes plain values (`logTickStrings`): 0.001, 0.01, 0.1, 1.
    """

    def __init__(self, orientation: str, **kwargs):
        super().__init__(orientation, **kwargs)
        self.enableAutoSIPrefix(False)

    def logTickStrings(self, values, scale, spacing):  # noqa: N802 (pyqtgraph's name)
        return [plain_number(10.0 ** float(v) * scale) for v in values]


def make_plot(title: str, left: str, bottom: str = "step") -> pg.PlotWidget:
    """A PlotWidget with the palette's colours, a grid, axes in plain values
    (`PlainAxis`), and no mouse-wheel zoom surprises (the view follows the data until the
    user pans or zooms; double-click auto-ranges)."""
    background, foreground = palette_colors()
    widget = pg.PlotWidget(background=background,
                           axisItems={name: PlainAxis(name) for name in ("left", "bottom")})
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


class StickyRange:
    """A y range that changes only when the data leave it or fill less than half of it.

    Auto-ranging moves the axis on every redraw, and a moved axis re-lays out all its
    tick labels (the most expensive part of a pyqtgraph repaint): most redraws now keep
    the axis as it was and repaint only the curves.

    Args:
        plot_item: the PlotItem whose y range this manages.
        margin: fraction of the span added above and below.
    """

    def __init__(self, plot_item, margin: float = 0.08):
        self.item = plot_item
        self.margin = margin
        self.range: tuple[float, float] | None = None
        plot_item.enableAutoRange(y=False)

    def reset(self) -> None:
        self.range = None

    def fit(self, low: float, high: float) -> None:
        """Shows at least [low, high] (in view coordinates: log10 for log axes)."""
        if not (np.isfinite(low) and np.isfinite(high)):
            return
        span = max(high - low, abs(high) * 1e-3, 1e-9)
        current = self.range
        if current is not None and current[0] <= low and high <= current[1] and \
                (high - low) >= 0.5 * (current[1] - current[0]):
            return
        self.range = (low - self.margin * span, high + self.margin * span)
        self.item.setYRange(*self.range, padding=0)


def set_x_span(plot_item, steps: int) -> None:
    """Fixes the x axis to the run's steps (known when it starts): no x auto-range."""
    plot_item.enableAutoRange(x=False)
    plot_item.setXRange(0, max(steps, 1), padding=0.02)
