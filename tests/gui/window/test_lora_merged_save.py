"""Writing a model with LoRA adapters merged from the GUI: Save As asks (default: kept)
and a merged save is a copy; the Export dialog's choice for keras/h5 (deployment formats
always merge). Plain Keras reloads a merged file with the document's outputs and no
adapter variables."""

from __future__ import annotations

import numpy as np
import pytest

from freezestudio.gui.common.dialogs import MERGE_LORA
from freezestudio.gui.export.dialog import MERGED_FOR_DEPLOYMENT
from freezestudio.gui.export.feature import install_export

EXPORT_TIMEOUT_MS = 180_000


@pytest.fixture
def adapted(qtbot, window, open_and_wait, attention_file):
    """The window over the attention model with live adapters (B not zero, as after
    training) on the attention projections and the head."""
    assert open_and_wait(qtbot, window, attention_file)
    document = window.document
    assert window.editor.add_attention_adapters(document.layer("mha"), rank=2)
    assert window.editor.add_adapters([document.layer("dense")], 2, alpha=4.0)
    rng = np.random.default_rng(0)
    for adapter in document.adapters():
        b = adapter.layer.lora_kernel_b
        b.assign(rng.normal(size=b.shape).astype("float32"))
    return window


def _inputs():
    return np.random.default_rng(1).normal(size=(3, 6, 8)).astype("float32")


def assert_plain_merged(document, path):
    """Plain Keras reloads `path` without adapters and computes the document's outputs."""
    import keras

    model = keras.saving.load_model(path)
    assert not [v.path for v in model.variables if "lora" in v.path]
    assert all(not getattr(layer, "lora_enabled", False) for layer in model._flatten_layers())
    assert "lora_rank" not in model.to_json()
    expected = np.asarray(document.model(_inputs()))
    np.testing.assert_allclose(np.asarray(model(_inputs())), expected, rtol=1e-5, atol=1e-6)


def test_save_as_merged_writes_a_plain_copy(qtbot, adapted, answers, tmp_path):
    window = adapted
    document = window.document
    source = document.source_path
    answers["save_path"] = str(tmp_path / "merged.keras")
    answers["merge_lora"] = True
    with qtbot.waitSignal(window.saved, timeout=60_000):
        assert window.save_as()
    assert "merge_lora" in answers["asked"] and answers["errors"] == []
    assert_plain_merged(document, tmp_path / "merged.keras")
    # a copy: the document keeps its adapters, its file and its unsaved edits
    assert sorted(a.id for a in document.adapters()) == [
        "dense:kernel", "mha:query/kernel", "mha:value/kernel"]
    assert document.source_path == source and window.is_modified()


def test_save_as_keeps_the_adapters_by_default(qtbot, adapted, answers, tmp_path):
    import keras

    window = adapted
    answers["save_path"] = str(tmp_path / "kept.keras")
    with qtbot.waitSignal(window.saved, timeout=60_000):
        assert window.save_as()
    assert not window.is_modified() and str(window.document.source_path).endswith("kept.keras")
    assert keras.saving.load_model(tmp_path / "kept.keras").get_layer("dense").lora_enabled
    answers["merge_lora"] = None  # the question cancelled: nothing is written
    answers["save_path"] = str(tmp_path / "cancelled.keras")
    assert window.save_as() is False
    assert not (tmp_path / "cancelled.keras").exists()


def test_the_export_dialog_merges_on_request(qtbot, adapted, answers, tmp_path):
    window = adapted
    feature = install_export(window)
    dialog = feature.open_dialog(modal=False)
    try:
        dialog.set_format("tflite")
        assert dialog.merge_lora.isVisibleTo(dialog) and dialog.merge_lora.isChecked()
        assert not dialog.merge_lora.isEnabled()
        assert dialog.merge_lora.text() == MERGED_FOR_DEPLOYMENT
        dialog.set_format("keras")
        assert dialog.merge_lora.text() == MERGE_LORA and dialog.merge_lora.isEnabled()
        assert not dialog.merge_lora.isChecked() and not dialog.options().merge_lora
        dialog.merge_lora.click()
        assert dialog.options().merge_lora
        out = tmp_path / "exported.keras"
        dialog.destination.setText(str(out))
        with qtbot.waitSignal(dialog.done, timeout=EXPORT_TIMEOUT_MS) as blocker:
            assert dialog.start()
        outcome = blocker.args[0]
        assert outcome.ok, outcome.error
        assert_plain_merged(window.document, out)
        assert len(window.document.adapters()) == 3
    finally:
        dialog.close()
        feature.shutdown()


@pytest.mark.parametrize("tick, button, expected", [(True, "Save", True), (False, "Save", False),
                                                    (True, "Cancel", None)])
def test_the_merge_question_answers_from_its_check_box(qtbot, tick, button, expected):
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication, QMessageBox

    from freezestudio.gui.common import dialogs

    def answer():
        box = QApplication.activeModalWidget()
        if not isinstance(box, QMessageBox):  # not shown yet
            QTimer.singleShot(10, answer)
            return
        assert not box.checkBox().isChecked()  # kept by default
        assert box.checkBox().text() == MERGE_LORA
        box.checkBox().setChecked(tick)
        [chosen] = [b for b in box.buttons() if b.text().replace("&", "") == button]
        chosen.click()

    QTimer.singleShot(0, answer)
    assert dialogs.ask_merge_lora(None, 3) is expected


def test_saving_before_close_does_not_offer_the_merged_copy(qtbot, window, open_and_wait,
                                                             answers, tmp_path):
    """Save in "save changes before closing?" on a demo (saved with Save As): a merged
    file is a copy that leaves the document unsaved, so it is not offered; the adapters are
    saved, the model closes and nothing is asked twice."""
    import keras

    from freezestudio.gui.common import dialogs
    from freezestudio.resources import DEMO_DIR

    assert open_and_wait(qtbot, window, DEMO_DIR / "cnn_transfer.keras")
    assert window.editor.add_adapters([window.document.layer("head_dense")], 2)
    answers["unsaved"] = dialogs.SAVE
    answers["save_path"] = str(tmp_path / "saved.keras")
    answers["merge_lora"] = True  # what a merge question would be answered
    with qtbot.waitSignal(window.saved, timeout=60_000):
        window.close_model()
    answers["unsaved"] = dialogs.DISCARD  # had the save left it modified: asked again
    qtbot.waitUntil(lambda: window.document is None)
    assert answers["asked"] == ["unsaved", "save_path"] and answers["errors"] == []
    assert keras.saving.load_model(tmp_path / "saved.keras").get_layer(
        "head_dense").lora_enabled
