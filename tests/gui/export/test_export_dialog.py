"""The Export dialog on the demo CNN: real exports on the worker thread, checked requests,
errors as dialogs (the core's message, never a traceback), cancel, the report."""

from __future__ import annotations

from pathlib import Path

import pytest

from freezestudio.core.export import dependencies
from freezestudio.gui.export import dialog as export_dialog
from freezestudio.gui.export.dialog import install_export
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
    dialog.set_format("keras")
    assert dialog.destination.text().endswith("cnn_transfer_export.keras")
    assert dialog.portable.isVisibleTo(dialog) and not dialog.quantize.isVisibleTo(dialog)
    dialog.set_format("tflite")
    assert dialog.destination.text().endswith("cnn_transfer_export.tflite")
    assert dialog.quantize.isVisibleTo(dialog) and not dialog.opset.isVisibleTo(dialog)
    dialog.set_format("onnx")
    assert dialog.opset.isVisibleTo(dialog) and dialog.opset.value() == 17
    dialog.set_format("savedmodel")
    assert dialog.destination.text().endswith("cnn_transfer_export")
    dialog.quantize.setChecked(True)  # hidden options do not leak into another format
    assert dialog.options().quantize is None


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
