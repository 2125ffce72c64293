"""The Export dialog on the demo CNN: real exports on the worker thread, checked requests,
errors as dialogs (the core's message, never a traceback), cancel, the report."""

from __future__ import annotations

from pathlib import Path

import pytest

from freezestudio.core.export import dependencies
from freezestudio.gui.export import dialog as export_dialog
from freezestudio.gui.export.feature import install_export
from freezestudio.resources import DEMO_DIR

CNN = DEMO_DIR / "cnn_transfer.keras"
EXPORT_TIMEOUT_MS = 180_000


@pytest.fixture
def dialog(qtbot, window, open_and_wait):
    """The Export dialog (not modal) over the demo CNN; the export thread must stop with
    the window."""
    feature = getattr(window, "export", None) or install_export(window)
    window.export = feature
    assert open_and_wait(qtbot, window, CNN)
    assert feature.action.isEnabled()
    shown = feature.open_dialog(modal=False)
    yield shown
    shown.close()
    window.close()
    assert feature.runner.thread.isFinished(), "the export QThread is still running"


def export(qtbot, dialog, fmt: str, out: Path):
    dialog.set_format(fmt)
    dialog.destination.setText(str(out))
    with qtbot.waitSignal(dialog.done, timeout=EXPORT_TIMEOUT_MS) as blocker:
        assert dialog.start()
    return blocker.args[0]


@pytest.mark.parametrize("fmt, name", [("tflite", "cnn.tflite"), ("savedmodel", "cnn_saved")])
def test_exports_the_demo_model_and_shows_the_verification_report(qtbot, dialog, answers,
                                                                   tmp_path, fmt, name):
    out = tmp_path / name
    outcome = export(qtbot, dialog, fmt, out)
    assert outcome.ok, outcome.error
    assert out.exists() and (fmt != "savedmodel" or (out / "saved_model.pb").is_file())
    text = dialog.report.toPlainText()
    assert text == "\n".join(outcome.report.lines())
    assert text.startswith(f"exported {out} ({fmt})")
    assert "head_out: max |diff|" in text and "ok" in text
    assert dialog.status.text() == "done: verified"
    assert dialog.export_button.isEnabled() and not dialog.cancel_button.isVisible()
    assert answers["errors"] == []


def test_the_form_follows_the_format(dialog):
    modes = dialog.quantization.mode
    dialog.set_format("keras")
    assert dialog.destination.text().endswith("cnn_transfer_export.keras")
    assert dialog.portable.isVisibleTo(dialog) and not modes.isVisibleTo(dialog)
    dialog.set_format("tflite")
    assert dialog.destination.text().endswith("cnn_transfer_export.tflite")
    assert modes.isVisibleTo(dialog) and not dialog.opset.isVisibleTo(dialog)
    assert [modes.itemData(i) for i in range(modes.count())] == [None, "dynamic", "float16",
                                                                  "int8"]
    assert not dialog.quantization.io_type.isVisibleTo(dialog)
    assert not dialog.quantization.layer_report.isVisibleTo(dialog)
    dialog.quantization.layer_report.setChecked(True)
    modes.setCurrentIndex(modes.findData("dynamic"))
    assert dialog.options().layer_report is False  # int8 only
    modes.setCurrentIndex(modes.findData("int8"))
    assert dialog.quantization.io_type.isVisibleTo(dialog)
    assert dialog.quantization.layer_report.isVisibleTo(dialog)
    assert dialog.options().layer_report is True
    assert dialog.quantization.calibration.isVisibleTo(dialog)
    assert dialog.options().quantize == "int8"
    dialog.set_format("onnx")
    assert dialog.opset.isVisibleTo(dialog) and dialog.opset.value() == 17
    assert [modes.itemData(i) for i in range(modes.count())] == [None, "dynamic"]
    assert modes.currentData() is None  # int8 is not an ONNX mode
    modes.setCurrentIndex(1)
    dialog.set_format("savedmodel")
    assert dialog.destination.text().endswith("cnn_transfer_export")
    assert dialog.options().quantize is None  # hidden options do not leak into another format


def test_the_data_default_to_the_training_docks(qtbot, window, dialog, tmp_path):
    assert dialog.quantization.verification.text() == "demo"  # the demo CNN's own data
    data = tmp_path / "mine.npz"
    data.write_bytes(b"")
    window.training.ensure_panel().data_box.add_source(str(data))
    again = window.export.open_dialog(modal=False)
    assert again.quantization.calibration.text() == str(data)
    assert again.quantization.verification.text() == str(data)
    again.close()


def test_int8_export_shows_size_agreement_and_layers_in_tables(qtbot, dialog, answers,
                                                               tmp_path):
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter

    panel = dialog.quantization
    dialog.set_format("tflite")
    panel.mode.setCurrentIndex(panel.mode.findData("int8"))
    panel.layer_report.setChecked(True)
    assert not dialog.layers.isVisibleTo(dialog)
    out = tmp_path / "cnn_int8.tflite"
    outcome = export(qtbot, dialog, "tflite", out)
    assert outcome.ok, outcome.error
    report = outcome.report
    assert report.quantization == "int8" and report.float_bytes > out.stat().st_size
    table = dialog.table
    assert table.value("Size") == (f"{out.stat().st_size:,} bytes "
                                   f"({out.stat().st_size / report.float_bytes:.2f}x)")
    assert table.value("Top-1 agreement") == f"{report.checks[0].top1_agreement:.4f}"
    assert table.value("Accuracy (model)") == f"{report.checks[0].model_accuracy:.4f}"
    layers = dialog.layers
    assert layers.isVisibleTo(dialog) and layers.rowCount() == len(report.layer_report) > 3
    worst = report.layer_report[0]
    assert layers.row(0) == [worst.layer, worst.op, f"{worst.rmse:.3g}",
                             f"{worst.rmse_per_scale:.2f}"]
    assert {layers.row(i)[0] for i in range(layers.rowCount())} >= {"head_dense", "head_out"}
    x_val = np.load(DEMO_DIR / "cnn_task_b.npz")["x_val"]
    got = Interpreter(model_path=str(out)).get_signature_runner()(image=x_val)
    got = next(iter(got.values()))
    expected = dialog.document.model.predict(x_val, verbose=0)
    assert report.checks[0].top1_agreement == pytest.approx(
        np.mean(np.argmax(got, 1) == np.argmax(expected, 1)))
    assert answers["errors"] == []


def test_cancel_during_the_calibration_pass_writes_nothing(qtbot, dialog, answers, tmp_path):
    panel = dialog.quantization
    dialog.set_format("tflite")
    panel.mode.setCurrentIndex(panel.mode.findData("int8"))
    out = tmp_path / "cnn_int8.tflite"
    dialog.destination.setText(str(out))
    seen, shown = [], dialog._on_progress

    def progress(fraction, message):  # on the GUI thread, as the dialog's own handler
        shown(fraction, message)
        if "calibrating" in message and not seen:
            seen.append(message)
            dialog.cancel_button.click()

    dialog._on_progress = progress
    with qtbot.waitSignal(dialog.done, timeout=EXPORT_TIMEOUT_MS) as blocker:
        assert dialog.start()
    assert seen and blocker.args[0].cancelled
    assert not out.exists() and answers["errors"] == []


@pytest.mark.parametrize("destination, expected", [
    ("missing_folder/cnn.tflite", "does not exist"),
    ("a_file/cnn.tflite", "is a file, not a folder"),
])
def test_a_bad_destination_is_refused_with_an_error_dialog(qtbot, dialog, answers, tmp_path,
                                                           destination, expected):
    (tmp_path / "a_file").write_text("x")
    dialog.set_format("tflite")
    dialog.destination.setText(str(tmp_path / destination))
    assert not dialog.start()
    assert len(answers["errors"]) == 1 and expected in answers["errors"][0]
    assert "Traceback" not in answers["errors"][0]
    assert not dialog.runner.is_busy()


def test_a_missing_optional_package_names_the_install_command(dialog, answers, monkeypatch,
                                                              tmp_path):
    real = dependencies.importlib.import_module

    def without_tf2onnx(name, *args):
        if name == "tf2onnx":
            raise ImportError("No module named 'tf2onnx'")
        return real(name, *args)

    monkeypatch.setattr(dependencies.importlib, "import_module", without_tf2onnx)
    monkeypatch.setattr(export_dialog.importlib.util, "find_spec",
                        lambda name: None if name == "tf2onnx" else object())
    dialog.set_format("onnx")
    assert "pip install" in dialog.note.text() and dialog.note.isVisibleTo(dialog)
    dialog.destination.setText(str(tmp_path / "cnn.onnx"))
    assert not dialog.start()
    assert len(answers["errors"]) == 1
    assert "tf2onnx" in answers["errors"][0] and dependencies.ONNX_INSTALL in answers["errors"][0]


def test_a_failed_verification_is_an_error_dialog_with_the_checks(qtbot, dialog, answers,
                                                                  tmp_path):
    dialog.tolerance.setText("1e-30")
    out = tmp_path / "cnn.tflite"
    outcome = export(qtbot, dialog, "tflite", out)
    assert not outcome.ok and outcome.report is not None
    assert answers["errors"] == [outcome.error]
    assert "Traceback" not in outcome.error
    assert "head_out: max |diff|" in dialog.report.toPlainText()
    assert "FAILED" in dialog.report.toPlainText()
    assert not out.exists()


def test_cancel_stops_the_export_and_writes_nothing(qtbot, dialog, answers, tmp_path):
    (tmp_path / "exports").mkdir()
    out = tmp_path / "exports" / "cnn.tflite"
    dialog.set_format("tflite")
    dialog.destination.setText(str(out))
    with qtbot.waitSignal(dialog.done, timeout=EXPORT_TIMEOUT_MS) as blocker:
        assert dialog.start()
        dialog.cancel_button.click()
    outcome = blocker.args[0]
    assert outcome.cancelled and "nothing was written" in outcome.error
    assert dialog.status.text().startswith("cancelled")
    assert answers["errors"] == [] and not out.exists()
    assert list((tmp_path / "exports").iterdir()) == []


def test_closing_the_dialog_during_an_export_cancels_it_first(qtbot, dialog, tmp_path):
    dialog.set_format("savedmodel")
    dialog.destination.setText(str(tmp_path / "saved"))
    with qtbot.waitSignal(dialog.done, timeout=EXPORT_TIMEOUT_MS) as blocker:
        assert dialog.start()
        dialog.reject()
        assert dialog.isVisible()  # stays until the worker has stopped
    assert blocker.args[0].cancelled
    qtbot.waitUntil(lambda: not dialog.isVisible())
    assert not (tmp_path / "saved").exists()
