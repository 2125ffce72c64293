"""Per-layer gradient norms: lines over time for chosen layers, and a layers x steps heatmap.

The heatmap's rows are the layers that own weights, in tree order (the run's
`RunInfo.layer_paths`); a layer that receives no gradient (frozen, or cut off by a
stop-gradient) has only NaN, which the image leaves transparent over a grey hatched
background: visibly empty. Colours are log10 of the norm.

The heatmap shows one of two views (`GradHeatmap.set_view`): the gradient norms, or the
update sizes |dw|/|w| (norm of the applied update over the norm of the weights, what
learning-rate multipliers change), recorded when the run was asked for them
(`TrainingConfig.update_sizes`).

Selecting layers in the tree chooses the lines (every receiving layer when the selection
holds none) and outlines their heatmap rows.
"""

from __future__ import annotations

import html

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF, Qt
from PySide6.QtGui import QBrush, QColor, QFontMetrics, QPen
from PySide6.QtWidgets import QGraphicsRectItem

from freezestudio.gui.plots.plot_style import (
    StickyRange,
    layer_color,
    make_plot,
    palette_colors,
    set_x_span,
)

MAX_LINES = 8
MAX_TICKS = 24
EMPTY_FILL = QColor(150, 150, 150, 90)
EMPTY_HATCH = QColor(110, 110, 110, 160)
GRADIENT, UPDATE = "Gradient norm", "Update size |dw|/|w|"
VIEWS = (GRADIENT, UPDATE)
UPDATE_TITLE = "Update size |dw|/|w| (log10)"


def short_name(path: str, paths: list) -> str:
    """The last part of a layer path, or the whole path where that part repeats."""
    last = path.rpartition("/")[2]
    same = sum(1 for p in paths if p.rpartition("/")[2] == last)
    return last if same == 1 else path


class LinesLegend(pg.LabelItem):
    """The lines' legend, one text item in the plot's top right corner: a colour swatch
    and a name per line, the emphasised ones bold. (pyqtgraph's `LegendItem` makes two
    graphics widgets per line and lays them out again for each: ~3 ms per line on the
    GUI thread when a run starts, more while the run's thread holds the interpreter.)"""

    def __init__(self, plot_item):
        self._background, foreground = palette_colors()
        super().__init__("", justify="left", size="8pt", color=foreground)
        self.setParentItem(plot_item.getViewBox())
        self.anchor(itemPos=(1, 0), parentPos=(1, 0), offset=(-10, 10))
        self.setVisible(False)

    def show_lines(self, entries: list) -> None:
        """Shows `entries`, (name, QColor, bold) per line (none: the legend is hidden)."""
        rows = []
        for name, color, bold in entries:
            text = html.escape(name)
            rows.append(f'<span style="color:{color.name()}">&#9473;&#9473;</span>&nbsp;'
                        + (f"<b>{text}</b>" if bold else text))
        self.setText("<br>".join(rows))
        self.setVisible(bool(rows))

    def paint(self, painter, *args) -> None:
        painter.setPen(QPen(QColor(128, 128, 128, 100)))
        painter.setBrush(QBrush(self._background))
        painter.drawRect(self.boundingRect())


class GradLinesPlot:
    """Gradient norm per step of some layers, log scale (`widget` is the PlotWidget)."""

    def __init__(self):
        self.widget = make_plot("Gradient norm per layer", "L2 norm (log scale)")
        self.item = self.widget.getPlotItem()
        self.item.setLogMode(y=True)
        self.legend = LinesLegend(self.item)
        # Made once: creating a curve and its legend entry during a run cost the GUI
        # thread ~3 ms each, more while the run's thread holds the interpreter.
        self._pool = [self._hidden_curve() for _ in range(MAX_LINES)]
        self.curves: dict[str, pg.PlotDataItem] = {}
        self.labels: dict[str, str] = {}  # the legend's name of each shown layer
        self.shown: list[str] = []
        self.selected: set[str] = set()
        self.y_range = StickyRange(self.item, margin=0.05)

    def start(self, total_steps: int) -> None:
        self.y_range.reset()
        set_x_span(self.item, total_steps)

    def _hidden_curve(self) -> pg.PlotDataItem:
        curve = pg.PlotDataItem(connect="finite")
        curve.setDownsampling(auto=True, method="peak")
        curve.setClipToView(True)
        curve.hide()
        self.item.addItem(curve)
        return curve

    def clear(self) -> None:
        for curve in self.curves.values():
            curve.setData([], [])
            curve.hide()
        self.curves.clear()
        self.legend.show_lines([])
        self.shown = []

    def choose(self, metrics, selected: list) -> None:
        """Shows the selected layers (or, with none, every receiving layer) as lines."""
        if metrics is None:
            self.clear()
            return
        receiving = list(metrics.info.receiving_layers)
        chosen = [p for p in selected if p in metrics.row_of]
        self.selected = set(chosen)
        shown = (chosen or receiving)[:MAX_LINES]
        if shown == self.shown and set(self.curves) == set(shown):
            self._restyle()
            return
        self.clear()
        names = metrics.layers
        self.labels = {}
        for i, path in enumerate(shown):
            label = short_name(path, names)
            self.labels[path] = label + ("" if path in receiving else " (no gradient)")
            self.curves[path] = self._pool[i]
            self._pool[i].show()
        self.shown = shown
        self._restyle()

    def _restyle(self) -> None:
        emphasise = bool(self.selected)
        entries = []
        for i, path in enumerate(self.shown):
            color, bold = layer_color(i), emphasise and path in self.selected
            self.curves[path].setPen(pg.mkPen(color, width=2.5 if bold else 1.5))
            entries.append((self.labels[path], color, bold))
        self.legend.show_lines(entries)

    def update(self, metrics) -> None:
        steps = metrics.steps.view()
        low, high = np.inf, -np.inf
        for path, curve in self.curves.items():
            values = metrics.layer_norms(path)
            positive = values[np.isfinite(values) & (values > 0)]
            if positive.size:
                curve.setData(steps, values)
                low, high = min(low, positive.min()), max(high, positive.max())
            else:
                curve.setData([], [])
        if np.isfinite(low):
            self.y_range.fit(float(np.log10(low)), float(np.log10(high)))


class GradHeatmap:
    """Layers x steps image of log10 gradient norms or update sizes (`widget` is the
    PlotWidget, `view_name` the view shown)."""

    def __init__(self):
        self.widget = make_plot("Gradient norm heatmap (log10)", "", "step")
        self.view_name = GRADIENT
        self.item = self.widget.getPlotItem()
        self.item.showGrid(x=False, y=False)
        self.item.invertY(True)
        self.view = self.item.getViewBox()
        self.image = pg.ImageItem(axisOrder="col-major")
        self.colormap = pg.colormap.get("viridis")
        self.image.setColorMap(self.colormap)
        self.fill = QGraphicsRectItem()
        self.fill.setBrush(QBrush(EMPTY_FILL))
        self.fill.setPen(QPen(Qt.PenStyle.NoPen))
        self.hatch = QGraphicsRectItem()
        self.hatch.setBrush(QBrush(EMPTY_HATCH, Qt.BrushStyle.BDiagPattern))
        self.hatch.setPen(QPen(Qt.PenStyle.NoPen))
        for z, graphic in enumerate((self.fill, self.hatch)):
            graphic.setZValue(-20 + z)
            self.view.addItem(graphic)
        self.item.addItem(self.image)
        self.bar = pg.ColorBarItem(colorMap=self.colormap, interactive=False, width=12,
                                   values=(-4, 0))
        self.bar.setImageItem(self.image, insert_in=self.item)
        self.marks: list = []
        self.layers: list[str] = []
        self.levels = (-4.0, 0.0)
        self.shown_image: np.ndarray | None = None
        self.item.enableAutoRange(x=False, y=False)

    def start(self, total_steps: int) -> None:
        self.total_steps = max(total_steps, 1)
        set_x_span(self.item, total_steps)
        self.item.setYRange(0, max(len(self.layers), 1), padding=0)
        self.levels = None

    def clear(self) -> None:
        self._clear_image()
        self._set_marks([])

    def _clear_image(self) -> None:
        self.image.clear()
        self.shown_image = None

    def set_layers(self, layers: list) -> None:
        """The rows (layer paths in tree order); labels the left axis with their names."""
        self.layers = list(layers)
        step = max(1, int(np.ceil(len(layers) / MAX_TICKS)))
        ticks = [(i + 0.5, short_name(p, layers)) for i, p in enumerate(layers)][::step]
        axis = self.item.getAxis("left")
        axis.setTicks([ticks, []])
        metrics = QFontMetrics(axis.style["tickFont"] or self.widget.font())
        widest = max((metrics.horizontalAdvance(label) for _, label in ticks), default=0)
        axis.setWidth(min(widest + 16, 260))  # wide enough before the first paint
        self.clear()

    def highlight(self, selected: list) -> None:
        """Outlines the rows of these layer paths."""
        rows = sorted({self.layers.index(p) for p in selected if p in self.layers})
        self._set_marks(rows)

    def _set_marks(self, rows: list) -> None:
        for mark in self.marks:
            self.item.removeItem(mark)
        self.marks = []
        _, foreground = palette_colors()
        for row in rows:
            mark = pg.LinearRegionItem(values=(row, row + 1), orientation="horizontal",
                                       movable=False, brush=pg.mkBrush(255, 255, 255, 50),
                                       pen=pg.mkPen(foreground, width=1.5))
            mark.setZValue(10)
            self.item.addItem(mark)
            self.marks.append(mark)

    def set_view(self, name: str) -> None:
        """Shows `name` (one of `VIEWS`) from the next `update` on."""
        self.view_name = name
        self.levels = None
        self._title(name == UPDATE and UPDATE_TITLE)

    def _title(self, text) -> None:
        """Sets the title when it changes (short: its width is the plot's minimum)."""
        text = text or "Gradient norm heatmap (log10)"
        if self.item.titleLabel.text != text:
            self.item.setTitle(text)

    def update(self, metrics) -> None:
        columns = metrics.update_heatmap if self.view_name == UPDATE else metrics.heatmap
        image = columns.image()
        if self.view_name == UPDATE and metrics.count and not columns.steps:
            self._title("Update size: not recorded (Settings)")
            self._clear_image()  # the selection's outlines stay for the gradient view
            return
        self._title(self.view_name == UPDATE and UPDATE_TITLE)
        if not len(image) or not self.layers:
            return
        rows = len(self.layers)
        width = len(image) * columns.bin
        finite = image[np.isfinite(image)]
        if finite.size:  # robust levels: a few zero norms (floored) must not wash it out
            low, high = (float(v) for v in np.percentile(finite, (1, 99.5)))
            if high - low < 1e-6:
                low, high = low - 0.5, high + 0.5
            self._fit_levels(low, high)
        self.shown_image = image
        self.image.setImage(image, autoLevels=False, levels=self.levels or (-4.0, 0.0))
        self.image.setRect(QRectF(0, 0, width, rows))
        for graphic in (self.fill, self.hatch):
            graphic.setRect(QRectF(0, 0, width, rows))

    def _fit_levels(self, low: float, high: float) -> None:
        """Changes the colour scale (and its bar's axis) only when the values leave it,
        in whole decades, so most redraws repaint the image alone."""
        levels = self.levels
        if levels is not None and levels[0] <= low and high <= levels[1] and \
                (high - low) >= 0.4 * (levels[1] - levels[0]):
            return
        self.levels = (float(np.floor(low * 2) / 2), float(np.ceil(high * 2) / 2))
        if self.levels[1] - self.levels[0] < 0.5:
            self.levels = (self.levels[0], self.levels[0] + 0.5)
        self.bar.setLevels(self.levels)

    def empty_rows(self) -> list[str]:
        """The layers whose row holds no value (what the user sees as empty)."""
        if self.shown_image is None:
            return []
        return [p for i, p in enumerate(self.layers)
                if not np.isfinite(self.shown_image[:, i]).any()]
