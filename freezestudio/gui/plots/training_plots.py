"""The live training plots, redrawn at most `MAX_REDRAWS_PER_SECOND` times a second.

Steps arrive one signal each, at whatever rate the run goes (hundreds a second on a small
head with cached features). `TrainingPlots.add_step` only appends to the run's numpy
buffers (`RunMetrics`) and marks the plots dirty; a `QTimer` redraws when something
changed, so the redraw rate is bounded whatever the step rate, and a slow run costs
nothing between steps. Every redraw's time is kept in `redraw_times` (tests check the
rate limit).

One timer tick redraws one plot, in turn: Qt paints everything that changed in one go,
and three pyqtgraph views repainted together blocked the event loop up to three times as
long (measured during a run on the 2-core test machine: ~60-100 ms for the three
together while the training thread competes for the CPU; one at a time stays near the
cost of the most expensive one). Each plot is thus refreshed about 7 times a second.
"""

from __future__ import annotations

import time

from PySide6.QtCore import QObject, Qt, QTimer, Signal, Slot
from PySide6.QtWidgets import QComboBox, QSplitter, QVBoxLayout, QWidget

from freezestudio.core.training.run_metrics import RunMetrics
from freezestudio.gui.plots.grad_plots import VIEWS, GradHeatmap, GradLinesPlot
from freezestudio.gui.plots.loss_plot import LossPlot

MAX_REDRAWS_PER_SECOND = 20
REDRAW_INTERVAL_MS = 1000 // MAX_REDRAWS_PER_SECOND
TICK_MS = REDRAW_INTERVAL_MS // 2  # the timer checks twice per interval


class TrainingPlots(QWidget):
    """Loss, gradient lines and heatmap side by side, fed by one run at a time; the
    `heatmap_view` combo switches the heatmap between gradient norms and update sizes.

    Signals:
        redrawn(): after every redraw (with the run's current step count in `metrics`).
    """

    redrawn = Signal()

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self.loss = LossPlot()
        self.lines = GradLinesPlot()
        self.heatmap = GradHeatmap()
        self.heatmap_view = QComboBox()
        self.heatmap_view.addItems(list(VIEWS))
        self.heatmap_view.setToolTip("Gradient norm per layer and step, or the update size "
                                     "|dw|/|w|: the norm of the applied update over the norm "
                                     "of the layer's weights (what LR multipliers change)")
        self.heatmap_view.currentTextChanged.connect(self.show_heatmap_view)
        heatmap = QWidget()
        column = QVBoxLayout(heatmap)
        column.setContentsMargins(0, 0, 0, 0)
        column.setSpacing(2)
        column.addWidget(self.heatmap_view)
        column.addWidget(self.heatmap.widget, 1)
        splitter = QSplitter(Qt.Orientation.Horizontal)
        for widget in (self.loss.widget, self.lines.widget, heatmap):
            splitter.addWidget(widget)
        splitter.setChildrenCollapsible(False)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(splitter)
        self.splitter = splitter
        self.metrics: RunMetrics | None = None
        self.stage_lines: list = []  # (plot item, InfiniteLine) of the schedule's stages
        self.selected: list[str] = []
        self.redraw_times: list[float] = []
        self._stale: set = set()  # plots whose data changed since they were drawn
        self._fresh: set = set()  # plots still showing the previous run
        self._turn = 0
        self._last = 0.0
        self._finishing = False  # the run ended; the timer stops once all is drawn
        self._timer = QTimer(self)
        self._timer.setTimerType(Qt.TimerType.PreciseTimer)
        self._timer.setInterval(TICK_MS)
        self._timer.timeout.connect(self._tick)

    # --- feeding ----------------------------------------------------------------------
    def show_idle(self, layers: list) -> None:
        """Before a run of a new document: empty plots with sensible axes, the heatmap's
        rows already labelled with the layers that own weights (tree order)."""
        self._timer.stop()
        self.metrics = None
        self.redraw_times = []
        self.loss.start(100)
        self.loss.widget.getPlotItem().setYRange(0, 1, padding=0)
        self.lines.clear()
        self.lines.start(100)
        self.lines.item.setYRange(-3, 0, padding=0)
        self.heatmap.set_layers(layers)
        self.heatmap.start(100)
        self._fresh = set()

    def start_run(self, info) -> RunMetrics:
        """Starts a new run's (empty) metrics buffers and returns them. Each plot is
        cleared and re-ranged at its first redraw (one at a time, like the redraws)."""
        self.clear_stages()
        self.metrics = RunMetrics(info)
        self.redraw_times = []
        self._fresh = set(self._plots())
        self._stale = set()
        self._finishing = False
        self._timer.start()
        return self.metrics

    def _reset(self, plot) -> None:
        total = self.metrics.info.total_steps
        if plot is self.heatmap:
            self.heatmap.set_layers(self.metrics.layers)
            self.heatmap.start(total)
            self.heatmap.highlight(self.selected)
        else:
            plot.start(total)
            if plot is self.lines:
                self.lines.choose(self.metrics, self.selected)

    def mark_stage(self, step: int, label: str) -> None:
        """A vertical line at `step` (a schedule stage starts after it) in the loss and
        gradient-line plots."""
        import pyqtgraph as pg

        for item in (self.loss.widget.getPlotItem(), self.lines.item):
            line = pg.InfiniteLine(pos=step, angle=90, label=label,
                                   pen=pg.mkPen("#CC79A7", width=1, style=Qt.PenStyle.DashLine),
                                   labelOpts={"position": 0.95, "color": "#CC79A7"})
            item.addItem(line)
            self.stage_lines.append((item, line))

    def clear_stages(self) -> None:
        for item, line in self.stage_lines:
            item.removeItem(line)
        self.stage_lines = []

    def add_step(self, report) -> None:
        if self.metrics is not None:
            self.metrics.add_step(report)
            self._mark()

    def add_epoch(self, report) -> None:
        if self.metrics is not None:
            self.metrics.add_epoch(report)
            self._mark()

    def _mark(self) -> None:
        self._stale = set(self._plots())

    def finish_run(self) -> None:
        """The run ended: what is not drawn yet is drawn over the next ticks, one plot
        each as during the run (all three at once blocked the window for ~50 ms after a
        MobileNetV2 run), then the timer stops."""
        self._stale |= self._fresh
        self._finishing = True
        if not self._stale:
            self._timer.stop()

    def pending(self) -> bool:
        """Whether some plot does not show the latest data yet."""
        return bool(self._stale)

    def flush(self) -> None:
        """Draws whatever is pending now (before saving the plots as an image)."""
        for plot in self._plots():
            if plot in self._stale:
                self.redraw(plot)

    @Slot(str)
    def show_heatmap_view(self, name: str) -> None:
        """The heatmap shows `name` (gradient norm or update size), redrawn now."""
        if self.heatmap_view.currentText() != name:
            self.heatmap_view.setCurrentText(name)  # calls back here
            return
        self.heatmap.set_view(name)
        if self.metrics is not None and self.heatmap not in self._fresh:
            self.redraw(self.heatmap)

    def highlight(self, paths: list) -> None:
        """Emphasises these layers (the tree's selection) in both gradient plots."""
        self.selected = list(paths)
        if self.lines not in self._fresh:  # a fresh plot chooses at its first redraw
            self.lines.choose(self.metrics, self.selected)
            if self.metrics is not None and self.metrics.count:
                self.lines.update(self.metrics)
        if self.heatmap not in self._fresh:
            self.heatmap.highlight(self.selected)

    # --- drawing ----------------------------------------------------------------------
    @Slot()
    def _tick(self) -> None:
        # at least REDRAW_INTERVAL_MS between two redraws, whatever the timer does
        if self._stale and time.perf_counter() - self._last >= REDRAW_INTERVAL_MS / 1000:
            plots = self._plots()
            order = [plots[(self._turn + k) % 3] for k in range(3)]
            plot = next(p for p in order if p in self._stale)
            self._turn = plots.index(plot) + 1
            self.redraw(plot)
        if self._finishing and not self._stale:
            self._timer.stop()

    def _plots(self) -> tuple:
        return (self.loss, self.lines, self.heatmap)

    def redraw(self, plot) -> None:
        """Redraws one of the three plots from the run's buffers."""
        metrics = self.metrics
        if metrics is None:
            return
        self._last = time.perf_counter()
        self.redraw_times.append(self._last)
        if plot in self._fresh:
            self._fresh.discard(plot)
            self._reset(plot)
        plot.update(metrics)
        self._stale.discard(plot)
        self.redrawn.emit()

    def save_png(self, path: str) -> bool:
        """Saves the three plots as one PNG image. Returns False if it cannot be written."""
        self.flush()
        return self.splitter.grab().save(path, "PNG")
