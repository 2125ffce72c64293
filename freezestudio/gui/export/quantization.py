"""The Export dialog's quantisation and data rows, and its report table.

`QuantizationPanel` offers the quantisation modes the chosen format has
(`options.QUANTIZATIONS`), the int8 I/O type, the calibration data (int8) and the
verification data (every format), with the least top-1 agreement, and the opt-in per-layer
report (int8; its table is `layer_table.LayerReportTable`). Data may lack labels. The
data are named, not read: the export task reads them off the GUI thread (`worker.run_export`). The
default data are the training dock's (`ExportDialog` is given them). `ReportTable` shows
the numbers a deployment engineer compares: size against the unquantised export,
agreement, accuracy.
"""

from __future__ import annotations

from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLineEdit,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QWidget,
)

MODE_TEXT = {
    None: "none (float32)",
    "dynamic": "dynamic range: int8 weights, float activations",
    "float16": "float16 weights",
    "int8": "int8: full integer, calibrated on data",
}
DATA_HINT = "an .npz, .npy or .csv file, an image folder, or demo"


def training_data_source(window, document) -> str | None:
    """The training dock's data source, else `demo` for a demo model (None: neither)."""
    from freezestudio.core.data import resolve_demo
    from freezestudio.core.errors import UserError

    panel = getattr(getattr(window, "training", None), "panel", None)
    spec = panel.data_box.spec() if panel is not None else None
    if spec is not None:
        return spec.source
    try:
        resolve_demo("demo", document.source_path)
    except UserError:
        return None
    return "demo"


def get_samples_path(parent, title: str, directory: str = "") -> str | None:
    """Asks for a data file (tests replace this function)."""
    path, _ = QFileDialog.getOpenFileName(parent, title, directory,
                                          "Data (*.npz *.npy *.csv);;All files (*)")
    return path or None


class QuantizationPanel(QWidget):
    """Quantisation mode, I/O type, calibration and verification data, agreement floor.

    Args:
        data_source: the data both data fields start with (e.g. the training dock's).
    """

    def __init__(self, data_source: str | None = None, parent=None):
        super().__init__(parent)
        self.mode = QComboBox()
        self.io_type = QComboBox()
        for value in ("float32", "int8"):
            self.io_type.addItem(f"{value} input/output", value)
        self.io_type.setToolTip("float32: runs wherever the float model runs; int8: for "
                                "integer-only accelerators (token ids stay int32)")
        self.calibration = QLineEdit(data_source or "")
        self.calibration.setPlaceholderText(DATA_HINT)
        self.calibration.setToolTip("Representative samples for int8 (up to 300 rows)")
        self.verification = QLineEdit(data_source or "")
        self.verification.setPlaceholderText(f"{DATA_HINT} (empty: random inputs)")
        self.verification.setToolTip("Compare the export with the model on these samples "
                                     "(held-out rows when the data have them)")
        self.min_agreement = QDoubleSpinBox()
        self.min_agreement.setRange(0.0, 1.0)
        self.min_agreement.setSingleStep(0.01)
        self.min_agreement.setDecimals(3)
        self.min_agreement.setSpecialValueText("default for the mode")
        self.min_agreement.setToolTip("Quantised exports: the least top-1 agreement with the "
                                      "model on the verification data")
        self.layer_report = QCheckBox("Which layers lose most (slower: calibrates again)")
        self.layer_report.setToolTip("int8: each quantised op's own error, worst first, in "
                                     "a table under the report")
        self.form = QFormLayout(self)
        self.form.setContentsMargins(0, 0, 0, 0)
        self.form.addRow("Quantise", self.mode)
        self.form.addRow("Integer I/O", self.io_type)
        self.form.addRow("Calibration data", self._with_browse(self.calibration,
                                                               "Calibration data"))
        self.form.addRow("Verification data", self._with_browse(self.verification,
                                                                "Verification data"))
        self.form.addRow("Least agreement", self.min_agreement)
        self.form.addRow("Per-layer report", self.layer_report)
        self.mode.currentIndexChanged.connect(self._update)
        self.set_format("keras")

    def _with_browse(self, line: QLineEdit, title: str) -> QWidget:
        box = QWidget()
        row = QHBoxLayout(box)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(line, 1)
        button = QPushButton("Browse…")
        button.clicked.connect(lambda: self._browse(line, title))
        row.addWidget(button)
        line.browse = button
        return box

    def _browse(self, line: QLineEdit, title: str) -> None:
        path = get_samples_path(self, title)
        if path:
            line.setText(path)

    def set_format(self, fmt: str) -> None:
        """Offers the modes of `fmt` (none for formats that cannot be quantised)."""
        from freezestudio.core.export.options import QUANTIZATIONS

        current = self.mode.currentData()
        self.mode.blockSignals(True)
        self.mode.clear()
        for mode in (None, *QUANTIZATIONS.get(fmt, ())):
            self.mode.addItem(MODE_TEXT[None if mode is None else str(mode)],
                              None if mode is None else str(mode))
        index = self.mode.findData(current)
        self.mode.setCurrentIndex(max(index, 0))
        self.mode.blockSignals(False)
        self._show(self.mode, self.mode.count() > 1)
        self._update()

    def _show(self, widget, visible: bool) -> None:
        widget.setVisible(visible)
        self.form.labelForField(widget).setVisible(visible)

    def _update(self, *_args) -> None:
        int8 = self.mode.currentData() == "int8"
        self._show(self.io_type, int8)
        self._show(self.calibration.parentWidget(), int8)
        self._show(self.layer_report, int8)
        self._show(self.min_agreement, self.mode.currentData() is not None)

    def selection(self) -> dict:
        """`{quantize, io_type, min_agreement, layer_report, calibration, verification}`
        of the form; the data are sources (None when empty or not applicable)."""
        mode = self.mode.currentData()
        floor = self.min_agreement.value()
        return {
            "quantize": mode,
            "io_type": self.io_type.currentData() if mode == "int8" else "float32",
            "min_agreement": floor if mode is not None and floor > 0 else None,
            "layer_report": mode == "int8" and self.layer_report.isChecked(),
            "calibration": (self.calibration.text().strip() or None) if mode == "int8"
            else None,
            "verification": self.verification.text().strip() or None,
        }

    def set_running(self, running: bool) -> None:
        for widget in (self.mode, self.io_type, self.calibration, self.verification,
                       self.calibration.browse, self.verification.browse, self.min_agreement,
                       self.layer_report):
            widget.setEnabled(not running)


class ReportTable(QTableWidget):
    """The export's numbers: size (and against the unquantised export), verification
    samples, largest difference, top-1 agreement, accuracy of the export and the model."""

    ROWS = ("Size", "Unquantised size", "Samples", "Max |diff|", "Top-1 agreement",
            "Accuracy (export)", "Accuracy (model)")

    def __init__(self, parent=None):
        super().__init__(len(self.ROWS), 1, parent)
        self.setHorizontalHeaderLabels(["Value"])
        self.setVerticalHeaderLabels(list(self.ROWS))
        self.horizontalHeader().setStretchLastSection(True)
        self.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.setMaximumHeight(240)
        self.clear_values()

    def clear_values(self) -> None:
        for row in range(len(self.ROWS)):
            self.setItem(row, 0, QTableWidgetItem("–"))

    def value(self, name: str) -> str:
        return self.item(self.ROWS.index(name), 0).text()

    def show_report(self, report) -> None:
        """Fills the table from an `ExportReport` ("–" where a number does not apply)."""
        summary = report.to_json()
        size, unquantised = summary["bytes"], summary["float_bytes"]
        values = {
            "Size": f"{size:,} bytes" + (f" ({size / unquantised:.2f}x)" if unquantised else ""),
            "Unquantised size": f"{unquantised:,} bytes" if unquantised else None,
            "Samples": (f"{summary['samples']} ({summary['samples_source']})"
                        if summary["verified"] else None),
            "Max |diff|": _number(summary["max_abs_diff"], "{:.3g}"),
            "Top-1 agreement": _number(summary["top1_agreement"], "{:.4f}"),
            "Accuracy (export)": _number(summary["accuracy"], "{:.4f}"),
            "Accuracy (model)": _number(summary["model_accuracy"], "{:.4f}"),
        }
        for row, name in enumerate(self.ROWS):
            self.setItem(row, 0, QTableWidgetItem(values[name] or "–"))


def _number(value, pattern: str) -> str | None:
    return None if value is None else pattern.format(value)
