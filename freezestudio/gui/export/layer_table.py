"""The Export dialog's per-layer quantisation table (`export --layer-report`).

One row per quantised op of a full-integer TFLite export, worst first, as the core's
`ExportReport.layer_report` lists them (`core/export/layer_report.py`): the layer, the
TFLite op, the RMSE of its own error and that RMSE in int8 steps of its output (plain
rounding is about 0.29). Hidden until an export with the report has finished.
"""

from __future__ import annotations

from PySide6.QtWidgets import QTableWidget, QTableWidgetItem

from freezestudio.core.export.layer_report import IDEAL_RMSE_PER_SCALE


class LayerReportTable(QTableWidget):
    """The per-layer report of the last export (see the module docstring)."""

    COLUMNS = ("Layer", "Op", "RMSE", "Int8 steps")

    def __init__(self, parent=None):
        super().__init__(0, len(self.COLUMNS), parent)
        self.setHorizontalHeaderLabels(list(self.COLUMNS))
        self.horizontalHeader().setStretchLastSection(True)
        self.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.setToolTip("Each quantised op's own error, worst first: its RMSE against the "
                        "op run in float on the same input, and that RMSE in steps of its "
                        f"int8 output (plain rounding: {IDEAL_RMSE_PER_SCALE:.2f})")
        self.setMaximumHeight(200)
        self.clear_values()

    def clear_values(self) -> None:
        self.setRowCount(0)
        self.setVisible(False)

    def row(self, index: int) -> list[str]:
        """The texts of one row."""
        return [self.item(index, column).text() for column in range(self.columnCount())]

    def show_report(self, report) -> None:
        """Fills the table from an `ExportReport` (hidden when it has no layer report)."""
        entries = report.layer_report or []
        self.setRowCount(len(entries))
        for index, entry in enumerate(entries):
            texts = (entry.layer or entry.tensor, entry.op, f"{entry.rmse:.3g}",
                     f"{entry.rmse_per_scale:.2f}")
            for column, text in enumerate(texts):
                self.setItem(index, column, QTableWidgetItem(text))
        self.setVisible(bool(entries))
