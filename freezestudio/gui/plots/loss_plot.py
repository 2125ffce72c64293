"""The loss plot: every step (raw and smoothed) and every epoch (train and validation).

All four curves are created once and only get `setData` on views of the run's buffers
(downsampled by peak and clipped to the view, as in pyqtgraph's `scrollingPlots.py`).
Epoch points sit at the step that ended the epoch, so both scales share one x axis.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor

from freezestudio.gui.plots.plot_style import StickyRange, make_plot, palette_colors, set_x_span


class LossPlot:
    """Owns a PlotWidget (`widget`) with the loss curves of one run at a time."""

    def __init__(self):
        self.widget = make_plot("Loss", "loss")
        item = self.widget.getPlotItem()
        _, foreground = palette_colors()
        legend = item.addLegend(offset=(-10, 10), labelTextColor=foreground,
                                labelTextSize="8pt")
        legend.setBrush(pg.mkBrush(palette_colors()[0]))
        raw = QColor(0, 114, 178, 80)
        self.raw = item.plot(pen=pg.mkPen(raw, width=1), name="step")
        self.smoothed = item.plot(pen=pg.mkPen("#0072B2", width=2), name="step (smoothed)")
        for curve in (self.raw, self.smoothed):
            curve.setDownsampling(auto=True, method="peak")
            curve.setClipToView(True)
        self.train = item.plot(pen=pg.mkPen("#E69F00", width=2), symbol="o", symbolSize=6,
                               symbolBrush="#E69F00", symbolPen=None, name="epoch (train)")
        self.val = item.plot(pen=pg.mkPen("#009E73", width=2, style=Qt.PenStyle.DashLine),
                             symbol="s", symbolSize=6, symbolBrush="#009E73", symbolPen=None,
                             name="epoch (validation)")
        self.y_range = StickyRange(item)

    def start(self, total_steps: int) -> None:
        self.clear()
        self.y_range.reset()
        set_x_span(self.widget.getPlotItem(), total_steps)

    def clear(self) -> None:
        for curve in (self.raw, self.smoothed, self.train, self.val):
            curve.setData([], [])

    def update(self, metrics) -> None:
        """Redraws from a `RunMetrics` (views of its buffers, no copies)."""
        steps = metrics.steps.view()
        self.raw.setData(steps, metrics.loss.view())
        self.smoothed.setData(steps, metrics.smoothed.view())
        per_epoch = metrics.info.steps_per_epoch
        ends = np.array([min(r.epoch * per_epoch, max(metrics.count, 1))
                         for r in metrics.epochs], dtype=float)
        self.train.setData(ends, np.array([r.loss for r in metrics.epochs], dtype=float))
        val = [(e, r.val_loss) for e, r in zip(ends, metrics.epochs, strict=True)
               if r.val_loss is not None]
        self.val.setData(np.array([v[0] for v in val], dtype=float),
                         np.array([v[1] for v in val], dtype=float))
        values = metrics.loss.view()
        finite = values[np.isfinite(values)]
        if finite.size:
            epoch_losses = [r.loss for r in metrics.epochs] + [v[1] for v in val]
            self.y_range.fit(min([float(finite.min()), *epoch_losses]),
                             max([float(finite.max()), *epoch_losses]))
