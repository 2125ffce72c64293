"""What the plots show, kept in numpy buffers (Qt-free): steps, losses, gradient norms.

The training panel appends every `StepReport` here (cheap: a few array writes) and the
plots read slices of the buffers at most a few times per second. Following pyqtgraph's
`scrollingPlots.py`, buffers are preallocated and grow by doubling, so appending is
amortised O(1) and a redraw is `setData` on views of the filled part.

The heatmap (layers x steps) keeps a bounded number of columns whatever the run's length:
each column covers `bin` steps (their mean), and when the columns are full, neighbours
are merged pairwise and `bin` doubles. A layer that receives no gradient has no values,
so its row stays NaN (drawn empty). Steps that carry update sizes (|dw|/|w|,
`TrainingConfig.update_sizes`) fill a second heatmap alike, `update_heatmap`.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np

SMOOTHING = 0.9  # exponential moving average factor of the smoothed loss
HEATMAP_COLUMNS = 512
ZERO_FLOOR = 1e-12


class GrowingArray:
    """A preallocated array of rows that doubles its capacity when full.

    Args:
        width: values per row (0: a 1-D array of scalars).
        capacity: initial rows.
    """

    def __init__(self, width: int = 0, capacity: int = 256):
        shape = (capacity, width) if width else (capacity,)
        self._data = np.full(shape, np.nan)
        self.size = 0

    def append(self, value) -> None:
        if self.size == len(self._data):
            grown = np.full((len(self._data) * 2, *self._data.shape[1:]), np.nan)
            grown[:self.size] = self._data
            self._data = grown
        self._data[self.size] = value
        self.size += 1

    @property
    def capacity(self) -> int:
        return len(self._data)

    def view(self) -> np.ndarray:
        """The filled rows (a view: do not keep it across appends)."""
        return self._data[:self.size]


class BinnedColumns:
    """Per-layer means over bins of steps, at most `columns` bins (see module docstring)."""

    def __init__(self, layers: int, columns: int = HEATMAP_COLUMNS):
        self.columns = columns
        self.bin = 1
        self.steps = 0
        self._sums = np.zeros((columns, layers))
        self._counts = np.zeros((columns, layers), dtype=np.int64)

    def add(self, row: np.ndarray) -> None:
        column = self.steps // self.bin
        if column >= self.columns:
            self._sums = _merge_pairs(self._sums)
            self._counts = _merge_pairs(self._counts)
            self.bin *= 2
            column = self.steps // self.bin
        finite = np.isfinite(row)
        self._sums[column, finite] += row[finite]
        self._counts[column, finite] += 1
        self.steps += 1

    def image(self) -> np.ndarray:
        """(used columns, layers) of means; NaN where a bin holds no value for a layer."""
        used = math.ceil(self.steps / self.bin) if self.steps else 0
        counts = self._counts[:used]
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(counts > 0, self._sums[:used] / np.maximum(counts, 1), np.nan)


def _merge_pairs(array: np.ndarray) -> np.ndarray:
    merged = np.zeros_like(array)
    half = len(array) // 2
    merged[:half] = array[0::2][:half] + array[1::2][:half]
    return merged


class RunMetrics:
    """Everything a run reported, for the plots and the CSV export.

    Args:
        info: the run's `RunInfo` (layer columns in tree order).
    """

    def __init__(self, info):
        self.info = info
        self.layers = list(info.layer_paths)
        self.row_of = {path: i for i, path in enumerate(self.layers)}
        self.steps = GrowingArray()
        self.epochs_of_steps = GrowingArray()
        self.loss = GrowingArray()
        self.smoothed = GrowingArray()
        self.norms = GrowingArray(max(len(self.layers), 1))
        self.heatmap = BinnedColumns(max(len(self.layers), 1))
        self.update_heatmap = BinnedColumns(max(len(self.layers), 1))
        self.epochs: list = []  # EpochReports
        self._ema = 0.0

    @property
    def count(self) -> int:
        return self.steps.size

    def _row(self, values: dict) -> np.ndarray:
        if not self.layers:
            return np.full(1, np.nan)
        return np.array([np.nan if values.get(p) is None else values[p] for p in self.layers],
                        dtype=float)

    def add_step(self, report) -> None:
        row = self._row(report.grad_norms)
        sizes = report.update_sizes
        if sizes is not None:
            self.update_heatmap.add(np.log10(np.maximum(self._row(sizes), ZERO_FLOOR)))
        loss = float(report.loss)
        # bias-corrected exponential moving average (the first steps are not pulled to 0)
        self._ema = SMOOTHING * self._ema + (1 - SMOOTHING) * loss
        smoothed = self._ema / (1 - SMOOTHING ** (self.count + 1))
        self.steps.append(report.step)
        self.epochs_of_steps.append(report.epoch)
        self.loss.append(loss)
        self.smoothed.append(smoothed)
        self.norms.append(row)
        # log10 for the heatmap; a zero norm is a value (floored), only NaN is "no gradient"
        self.heatmap.add(np.log10(np.maximum(row, ZERO_FLOOR)))

    def add_epoch(self, report) -> None:
        self.epochs.append(report)

    def layer_norms(self, path: str) -> np.ndarray:
        """The gradient norms of one layer over the steps so far (NaN: no gradient)."""
        return self.norms.view()[:, self.row_of[path]]

    def step_reports(self):
        """The steps as report-like objects (epoch, step, loss, grad_norms)."""
        norms, epochs = self.norms.view(), self.epochs_of_steps.view()
        steps, losses = self.steps.view(), self.loss.view()
        for i in range(self.count):
            values = {p: (None if math.isnan(norms[i, j]) else float(norms[i, j]))
                      for j, p in enumerate(self.layers)}
            yield SimpleNamespace(epoch=int(epochs[i]), step=int(steps[i]),
                                  loss=float(losses[i]), grad_norms=values)

    def write_csv(self, path) -> list:
        """Writes the per-step metrics CSV (as `train --metrics-csv` does) and,
        once an epoch ended, the per-epoch history beside it (`NAME.epochs.csv`).

        Returns:
            The paths written.

        Raises:
            UserError: a file cannot be written.
        """
        from pathlib import Path

        from freezestudio.core.training.run_logs import history_path_for, write_metrics_csv

        write_metrics_csv(path, self.info, self.step_reports(), self.epochs)
        return [Path(path)] + ([history_path_for(path)] if self.epochs else [])
