"""File > Export…: format, options, destination; a verified export off the GUI thread.

The dialog lists `available_formats(document)`, shows only the options that apply to
the chosen format, suggests a destination with the format's usual suffix, and checks the
request with the core's `check_request` before starting (a bad destination or a missing
optional package is reported at once, with the install command). The export runs as a
task (`worker.run_export`) on the export feature's own `TaskHost`, with a progress bar and
Cancel; at the end the verification report (`ExportReport.lines()`) is shown in the
dialog, with its numbers in a table (`quantization.ReportTable`) and, when asked for, the
per-layer quantisation report in another (`layer_table.LayerReportTable`). The quantisation modes
and the calibration/verification data are `quantization.QuantizationPanel`. Where the
document has LoRA adapters, a keras/h5 export may merge them into the kernels (default:
kept); deployment exports always merge them (shown ticked, fixed). Errors are
dialogs with the core's one-line message (`dialogs.show_error`), never a traceback.
"""

from __future__ import annotations

import dataclasses
import importlib.util
from functools import partial
from pathlib import Path

from PySide6.QtCore import Signal, Slot
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from freezestudio.core.errors import UserError
from freezestudio.gui.background.threads import TaskHost, TaskState
from freezestudio.gui.common import dialogs
from freezestudio.gui.export.layer_table import LayerReportTable
from freezestudio.gui.export.quantization import (
    QuantizationPanel,
    ReportTable,
)
from freezestudio.gui.export.worker import ExportRequest, run_export
from freezestudio.resources import is_bundled_demo

DESCRIPTIONS = {
    "keras": "Keras (.keras): the editable model, flags kept",
    "h5": "HDF5 (.h5): the editable model, legacy format",
    "savedmodel": "SavedModel (folder): TensorFlow Serving",
    "tflite": "TFLite (.tflite): mobile and embedded",
    "onnx": "ONNX (.onnx): other runtimes",
    "frozen-graph": "Frozen graph (.pb): variables folded into constants",
}
ONNX_MODULES = ("tf2onnx", "onnx", "onnxruntime")
KERAS_FORMATS = ("keras", "h5")
MERGE_LORA_TIP = ("Write a plain model: each adapted kernel becomes the kernel its layer "
                  "computes with, no adapter variables. Unticked, the file keeps the adapters "
                  "so it trains on with them.")
MERGED_FOR_DEPLOYMENT = "Merged into the kernels (deployment formats always merge them)"


def default_folder(source, directory: str = "") -> Path:
    """Where an export goes by default: `directory`, else beside the model; never into the
    bundled demos (read-only templates): then the user's documents folder, else home."""
    folder = Path(directory or Path(source).parent).resolve()
    return dialogs.user_folder() if is_bundled_demo(folder) else folder


def get_export_path(parent, fmt: str, suggested: str) -> str | None:
    """Asks where to write the export (a folder name for a SavedModel)."""
    from freezestudio.core.export import default_suffix

    suffix = default_suffix(fmt)
    pattern = f"{fmt} (*{suffix})" if suffix else "SavedModel folder (*)"
    path, _ = QFileDialog.getSaveFileName(parent, f"Export as {fmt}", suggested, pattern)
    if path and suffix and not Path(path).suffix:
        path += suffix
    return path or None


class ExportDialog(QDialog):
    """The Export dialog for one document (see the module docstring).

    Args:
        document: the model to export.
        runner: the `TaskHost` exports run on (one at a time).
        parent: the window.
        directory: where to suggest the destination (default: beside the model).
        data_source: the calibration/verification data offered first (the training
            dock's data), or None.

    Signals:
        done(object): an export ended and its outcome was shown (the `ExportOutcome`).
    """

    done = Signal(object)

    def __init__(self, document, runner: TaskHost, parent: QWidget | None = None,
                 directory: str = "", data_source: str | None = None):
        from freezestudio.core.export import available_formats
        from freezestudio.core.export.options import DEFAULT_OPSET, DEFAULT_TOLERANCE

        super().__init__(parent)
        self.setWindowTitle("Export Model")
        self.document, self.runner = document, runner
        self.outcome = None
        self.task: TaskState | None = None  # the export running, if any
        self._close_when_done = False
        self.format = QComboBox()
        for fmt in available_formats(document):
            self.format.addItem(DESCRIPTIONS.get(fmt, fmt), fmt)
        self.quantization = QuantizationPanel(data_source)
        self.opset = QSpinBox()
        self.opset.setRange(7, 30)
        self.opset.setValue(DEFAULT_OPSET)
        self.portable = QCheckBox("Portable: drop stop-gradient layers (plain Keras loads it)")
        self.merge_lora = QCheckBox(dialogs.MERGE_LORA)
        self.merge_lora.setToolTip(MERGE_LORA_TIP)
        self.verify = QCheckBox("Load the export back and compare it with the model")
        self.verify.setChecked(True)
        self.tolerance = QLineEdit(f"{DEFAULT_TOLERANCE:g}")
        self.tolerance.setToolTip("Largest accepted |export - model| per output, relative to "
                                  "the output's scale")
        self.note = QLabel()
        self.note.setWordWrap(True)
        self.destination = QLineEdit()
        self.browse = QPushButton("Browse…")
        row = QHBoxLayout()
        row.addWidget(self.destination, 1)
        row.addWidget(self.browse)
        form = QFormLayout()
        form.addRow("Format", self.format)
        form.addRow("ONNX opset", self.opset)
        form.addRow("Stop-gradients", self.portable)
        form.addRow("LoRA adapters", self.merge_lora)
        form.addRow("Verify", self.verify)
        form.addRow("Tolerance", self.tolerance)
        form.addRow("Destination", row)
        self._rows = {self.opset: "onnx", self.portable: KERAS_FORMATS}
        self._has_adapters = bool(document.adapters())
        self._keras_merge = False  # the merge choice for keras/h5 (clicks change it)
        self.form = form
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setFormat("")
        self.status = QLabel("")
        self.report = QPlainTextEdit()
        self.report.setReadOnly(True)
        self.report.setPlaceholderText("The verification report appears here.")
        self.report.setMinimumHeight(100)
        self.table = ReportTable()
        self.layers = LayerReportTable()
        self.buttons = QDialogButtonBox()
        self.export_button = self.buttons.addButton("Export",
                                                    QDialogButtonBox.ButtonRole.AcceptRole)
        self.cancel_button = self.buttons.addButton("Cancel Export",
                                                    QDialogButtonBox.ButtonRole.ActionRole)
        self.close_button = self.buttons.addButton(QDialogButtonBox.StandardButton.Close)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.quantization)
        layout.addWidget(self.note)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        layout.addWidget(self.table)
        layout.addWidget(self.layers)
        layout.addWidget(self.report, 1)
        layout.addWidget(self.buttons)
        self.resize(640, 720)
        self._directory = str(default_folder(document.source_path, directory))
        self._suffix = None
        self.format.currentIndexChanged.connect(self._format_changed)
        self.browse.clicked.connect(self._browse)
        self.export_button.clicked.connect(self.start)
        self.cancel_button.clicked.connect(self.cancel)
        self.close_button.clicked.connect(self.reject)
        self.verify.toggled.connect(self.tolerance.setEnabled)
        self.merge_lora.toggled.connect(self._merge_toggled)
        self.verify.toggled.connect(self.quantization.verification.setEnabled)
        self._format_changed()
        self._set_running(False)

    # --- form -------------------------------------------------------------------------
    def fmt(self) -> str:
        return self.format.currentData()

    def set_format(self, fmt: str) -> None:
        self.format.setCurrentIndex(self.format.findData(fmt))

    def _format_changed(self, *_args) -> None:
        from freezestudio.core.export import default_suffix

        fmt = self.fmt()
        for widget, applies in self._rows.items():
            visible = fmt in (applies if isinstance(applies, tuple) else (applies,))
            widget.setVisible(visible)
            self.form.labelForField(widget).setVisible(visible)
        self._show_merge_lora(fmt)
        self.quantization.set_format(fmt)
        suffix = default_suffix(fmt)
        stem = Path(self.document.source_path).name.split(".")[0] or "model"
        current = self.destination.text().strip()
        if not current:
            self.destination.setText(str(Path(self._directory) / f"{stem}_export{suffix}"))
        elif self._suffix is not None and (current.endswith(self._suffix) or not self._suffix):
            base = current[:len(current) - len(self._suffix)] if self._suffix else current
            self.destination.setText(base + suffix)
        self._suffix = suffix
        note = self._dependency_note(fmt)
        self.note.setText(note)
        self.note.setVisible(bool(note))

    def _show_merge_lora(self, fmt: str) -> None:
        """The merge choice, shown where the document has adapters: the user's for
        keras/h5 (default: kept), ticked and fixed for deployment formats (they always
        merge)."""
        keras_file = fmt in KERAS_FORMATS
        for widget in (self.merge_lora, self.form.labelForField(self.merge_lora)):
            widget.setVisible(self._has_adapters)
        self.merge_lora.setText(dialogs.MERGE_LORA if keras_file else MERGED_FOR_DEPLOYMENT)
        # enabled first: `_merge_toggled` records only the user's own keras/h5 choice
        self.merge_lora.setEnabled(keras_file and self.task is None)
        self.merge_lora.setChecked(self._keras_merge or not keras_file)

    def _merge_toggled(self, checked: bool) -> None:
        if self.merge_lora.isEnabled():  # the user's choice (fixed for deployment formats)
            self._keras_merge = checked

    @staticmethod
    def _dependency_note(fmt: str) -> str:
        if fmt != "onnx":
            return ""
        missing = [m for m in ONNX_MODULES if importlib.util.find_spec(m) is None]
        if not missing:
            return ""
        from freezestudio.core.export.dependencies import ONNX_INSTALL

        return f"ONNX export needs {', '.join(missing)}: {ONNX_INSTALL}"

    def _browse(self) -> None:
        path = get_export_path(self, self.fmt(), self.destination.text())
        if path:
            self.destination.setText(path)

    def options(self):
        """The `ExportOptions` of the form. Raises UserError for a bad tolerance."""
        from freezestudio.core.export import ExportOptions

        fmt = self.fmt()
        text = self.tolerance.text().strip()
        try:
            tolerance = float(text)
        except ValueError:
            raise UserError(f"tolerance: '{text}' is not a number") from None
        chosen = self.quantization.selection()
        return ExportOptions(quantize=chosen["quantize"], io_type=chosen["io_type"],
                             min_agreement=chosen["min_agreement"],
                             layer_report=chosen["layer_report"],
                             opset=self.opset.value() if fmt == "onnx" else None,
                             portable=fmt in KERAS_FORMATS and self.portable.isChecked(),
                             merge_lora=fmt in KERAS_FORMATS and self._keras_merge,
                             verify=self.verify.isChecked(), tolerance=tolerance)

    def data_sources(self) -> tuple[str | None, str | None]:
        """(calibration, verification) data named in the form (None: not used)."""
        chosen = self.quantization.selection()
        verification = chosen["verification"] if self.verify.isChecked() else None
        return chosen["calibration"], verification

    # --- running -------------------------------------------------------------------------
    @Slot()
    def start(self) -> bool:
        """Checks the request (`check_request`) and starts the export. False if refused."""
        from freezestudio.core.export import MissingDependencyError, check_request

        if self.runner.is_busy():
            return False
        out = self.destination.text().strip()
        try:
            if not out:
                raise UserError("choose where to write the export")
            options = self.options()
            calibration, verification = self.data_sources()
            if options.quantize == "int8" and calibration is None:
                raise UserError("int8 quantisation needs calibration data: name a data file "
                                "(or demo) under Calibration data")
            check_request(self.fmt(), out, dataclasses.replace(
                options, calibration=calibration), self.document)
        except MissingDependencyError as exc:
            dialogs.show_error(self, "Missing optional package", str(exc))
            return False
        except UserError as exc:
            dialogs.show_error(self, "Cannot export", str(exc))
            return False
        self.outcome = None
        self.report.clear()
        self.table.clear_values()
        self.layers.clear_values()
        self.progress.setValue(0)
        self.status.setText("starting…")
        self._set_running(True)
        request = ExportRequest(self.document, self.fmt(), out, options, calibration,
                                verification)
        self.task = self.runner.submit(partial(run_export, request), on_done=self._on_finished,
                                       on_progress=self._on_progress)
        return True

    @Slot()
    def cancel(self) -> None:
        if self.task is not None:
            self.task.cancel()
            self.status.setText("cancelling after the current step…")
            self.cancel_button.setEnabled(False)

    def _set_running(self, running: bool) -> None:
        for widget in (self.format, self.opset, self.portable, self.verify,
                       self.tolerance, self.destination, self.browse, self.export_button):
            widget.setEnabled(not running)
        self.merge_lora.setEnabled(not running and self.fmt() in KERAS_FORMATS)
        self.quantization.set_running(running)
        if not running:
            self.quantization.verification.setEnabled(self.verify.isChecked())
        self.cancel_button.setEnabled(running)
        self.cancel_button.setVisible(running)

    def _on_progress(self, fraction: float, message: str) -> None:
        self.progress.setValue(int(fraction * 1000))
        self.progress.setFormat(f"{fraction:.0%}")
        self.status.setText(message)

    def _on_finished(self, outcome) -> None:
        self.task = None
        self.outcome = outcome
        self._set_running(False)
        report = outcome.report
        if outcome.ok:
            self.progress.setValue(1000)
            self.status.setText("done: verified" if report.verified else "done (not verified)")
            self.report.setPlainText("\n".join(report.lines()))
            self.table.show_report(report)
            self.layers.show_report(report)
        elif outcome.cancelled:
            self.progress.setValue(0)
            self.progress.setFormat("")
            self.status.setText("cancelled: nothing was written")
        else:
            self.status.setText("failed: nothing was written")
            lines = [outcome.error]
            if report is not None and report.checks:
                lines += ["", "verification:"] + [f"  {c.line()}" for c in report.checks]
                self.table.show_report(report)
            self.report.setPlainText("\n".join(lines))
            title = "Missing optional package" if outcome.install else "Export failed"
            dialogs.show_error(self, title, outcome.error, outcome.details)
        self.done.emit(outcome)
        if self._close_when_done:
            super().reject()

    def reject(self) -> None:
        """Closing while exporting cancels, then closes when the export has stopped."""
        if self.task is not None:
            self._close_when_done = True
            self.cancel()
            return
        super().reject()
