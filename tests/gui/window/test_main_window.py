"""The main window end to end: open (worker thread), dialogs, drag & drop, save, plans."""

from __future__ import annotations

import json
import shutil

from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QTimer, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication, QMessageBox

from freezestudio.core.files.loading import open_document
from freezestudio.gui.common import dialogs
from freezestudio.gui.editor.tree_model import FREEZE, STOP
from freezestudio.gui.editor.tree_view import BOX, GAP

REAL_SHOW_ERROR = dialogs.show_error


def node_index(window, address, column=0):
    return window.model.index_of(window.document.find(address), column)


def test_start_page_lists_demo_models(window):
    assert window.pages.currentWidget() is window.start_page
    names = [window.start_page.demos.item(i).text().split("\n")[0]
             for i in range(window.start_page.demos.count())]
    assert "cnn_transfer.keras" in names
    assert window.windowTitle() == "FreezeStudio"


def test_open_runs_in_the_background_and_shows_the_tree(qtbot, window, model_files, settings,
                                                        open_and_wait):
    assert open_and_wait(qtbot, window, model_files["nested"])
    assert window.pages.currentWidget() is window.editor_page
    assert window.document.layer("head_dense") is not None
    assert window.windowTitle().startswith("nested.keras")
    assert not window.isWindowModified()
    assert "46" in window.summary.text() or "params" in window.summary.text()
    assert window.tf_label.text().startswith("TensorFlow ready")
    assert settings.recent_files()[0] == str(model_files["nested"].resolve())
    assert window.start_page.recent.item(0).data(Qt.ItemDataRole.UserRole + 1) == \
        str(model_files["nested"].resolve())
    assert window.actions.recent_menu.actions()[0].text() == "nested.keras"


def test_open_from_the_menu_toolbar_and_shortcut(qtbot, window, model_files, answers):
    answers["open_path"] = str(model_files["nested"])
    assert window.actions.open.shortcut().toString() == "Ctrl+O"
    assert window.actions.open in window.actions.toolbar.actions()
    with qtbot.waitSignal(window.load_finished, timeout=60_000):
        window.actions.open.trigger()
    assert answers["asked"] == ["open_path"] and window.document is not None
    answers["open_path"] = None  # the dialog cancelled: nothing happens
    window.actions.open.trigger()
    assert window.document.source_path == model_files["nested"]


def test_a_bad_file_gives_an_error_dialog_not_a_traceback(qtbot, window, model_files, answers,
                                                          open_and_wait):
    assert not open_and_wait(qtbot, window, model_files["bad"])
    assert len(answers["errors"]) == 1
    assert "broken.keras" in answers["errors"][0] and "Traceback" not in answers["errors"][0]
    assert window.pages.currentWidget() is window.start_page


def test_the_real_error_dialog_shows_the_core_message(qtbot, window, model_files, monkeypatch,
                                                      open_and_wait):
    monkeypatch.setattr(dialogs, "show_error", REAL_SHOW_ERROR)
    seen = []

    def dismiss():
        box = QApplication.activeModalWidget()
        if isinstance(box, QMessageBox):
            seen.append(box.text())
            box.accept()
        else:
            QTimer.singleShot(50, dismiss)

    QTimer.singleShot(50, dismiss)
    assert not open_and_wait(qtbot, window, model_files["bad"])
    assert seen and "not a model file" in seen[0]


def test_lambda_models_ask_for_trust(qtbot, window, model_files, answers, open_and_wait):
    answers["trust"] = False
    assert not open_and_wait(qtbot, window, model_files["lambda"])
    assert answers["asked"] == ["trust"] and window.document is None
    answers["trust"] = True
    with qtbot.waitSignal(window.load_finished, timeout=60_000,
                          check_params_cb=lambda ok: ok):
        window.open_path(model_files["lambda"])
    assert window.document.layer("double").class_name == "Lambda"


def test_a_missing_custom_class_asks_for_its_module(qtbot, window, model_files, answers):
    answers["module"] = str(model_files["custom_module"])
    with qtbot.waitSignal(window.load_finished, timeout=60_000,
                          check_params_cb=lambda ok: ok):
        window.open_path(model_files["custom"])
    assert "module" in answers["asked"]
    assert window.document.layer("scale").class_name == "Scale"


def test_drag_and_drop_of_a_file_opens_it(qtbot, window, model_files):
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(model_files["nested_h5"]))])
    enter = QDragEnterEvent(QPoint(50, 50), Qt.DropAction.CopyAction, mime,
                            Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    window.dragEnterEvent(enter)
    assert enter.isAccepted()
    drop = QDropEvent(QPointF(50, 50), Qt.DropAction.CopyAction, mime,
                      Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    with qtbot.waitSignal(window.load_finished, timeout=60_000):
        window.dropEvent(drop)
    assert window.document.source_format == "h5"
    text = QMimeData()
    text.setText("not a file")
    refused = QDragEnterEvent(QPoint(5, 5), Qt.DropAction.CopyAction, text,
                              Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    window.dragEnterEvent(refused)
    assert not refused.isAccepted()


def test_cancelled_loading_shows_nothing(qtbot, window, model_files):
    with qtbot.waitSignal(window.load_finished) as blocker:
        window.open_path(model_files["nested"])
        assert window.pages.currentWidget() is window.busy
        window.busy.cancel.click()
    assert blocker.args == [False]
    qtbot.waitUntil(lambda: not window.runner.is_busy(), timeout=60_000)
    assert window.document is None and window.pages.currentWidget() is window.start_page


def test_save_round_trip_keeps_freeze_and_stop_gradient(qtbot, opened, answers, tmp_path,
                                                        open_and_wait):
    window = opened
    window.editor.set_trainable([window.document.layer("head_dense")], False)
    window.editor.set_trainable([window.document.weight("out:bias")], False)
    window.editor.set_stop_points(add=["head_dense"])
    assert window.isWindowModified() and "[*]" in window.windowTitle()
    answers["save_path"] = str(tmp_path / "edited.keras")
    with qtbot.waitSignal(window.saved, timeout=60_000):
        window.save_as()
    assert not window.isWindowModified()
    assert window.windowTitle().startswith("edited.keras")
    reopened = open_document(tmp_path / "edited.keras")
    assert reopened.snapshot() == window.document.snapshot()
    assert open_and_wait(qtbot, window, tmp_path / "edited.keras")
    assert window.model.data(node_index(window, "head_dense", FREEZE),
                             Qt.ItemDataRole.CheckStateRole) == Qt.CheckState.Checked
    assert window.document.stop_points == ["head_dense"]


def test_unsaved_changes_are_asked_about(qtbot, window, model_files, answers, tmp_path,
                                         open_and_wait):
    copy = tmp_path / "copy.keras"
    shutil.copy(model_files["nested"], copy)
    assert open_and_wait(qtbot, window, copy)
    window.editor.set_trainable([window.document.layer("out")], False)
    answers["unsaved"] = dialogs.CANCEL
    window.open_path(model_files["nested_h5"])
    assert answers["asked"] == ["unsaved"] and window.document.source_path == copy
    answers["unsaved"] = dialogs.SAVE  # saves over copy.keras, then opens the other file
    with qtbot.waitSignal(window.load_finished, timeout=60_000):
        window.open_path(model_files["nested_h5"])
    assert window.document.source_format == "h5"
    saved = open_document(copy)
    assert saved.trainable_state(saved.layer("out")) is False


def test_undo_redo_through_the_edit_menu_and_title(opened):
    window = opened
    index = node_index(window, "out", FREEZE)
    window.model.setData(index, Qt.CheckState.Checked, Qt.ItemDataRole.CheckStateRole)
    assert window.isWindowModified()
    assert window.actions.undo.text() == "&Undo Freeze out"
    window.actions.undo.trigger()
    assert window.document.trainable_state(window.document.layer("out")) is True
    assert not window.isWindowModified()
    window.actions.redo.trigger()
    assert window.document.trainable_state(window.document.layer("out")) is False


def test_space_and_mouse_toggle_rows(qtbot, opened):
    window = opened
    tree = window.tree
    out = window.document.layer("out")
    tree.select_nodes([out])
    tree.setFocus()
    QTest.keyClick(tree, Qt.Key.Key_Space)
    assert window.document.trainable_state(out) is False
    QTest.keyClick(tree, Qt.Key.Key_U)  # the Unfreeze Selected shortcut
    assert window.document.trainable_state(out) is True
    QTest.keyClick(tree, Qt.Key.Key_F)
    assert window.document.trainable_state(out) is False
    rect = tree.visualRect(node_index(window, "head_dense", FREEZE))
    QTest.mouseClick(tree.viewport(), Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier,
                     QPoint(rect.left() + 10, rect.center().y()))
    assert window.document.trainable_state(window.document.layer("head_dense")) is False
    rect = tree.visualRect(node_index(window, "head_dense", STOP))
    QTest.mouseClick(tree.viewport(), Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier,
                     QPoint(rect.left() + GAP + BOX // 2, rect.center().y()))
    assert window.document.stop_points == ["head_dense"]


def test_filter_highlights_and_acts_on_matches(qtbot, opened):
    window = opened
    window.filter_bar.set_text("head_*")
    assert {getattr(n, "path", None) for n in window.filter_bar.matches} >= {"head_dense",
                                                                             "head_dropout"}
    window.filter_bar.freeze.click()
    assert window.document.trainable_state(window.document.layer("head_dense")) is False
    assert window.document.trainable_state(window.document.layer("out")) is True
    window.filter_bar.only.setChecked(True)
    out = node_index(window, "out")
    assert window.tree.isRowHidden(out.row(), out.parent())
    window.filter_bar.set_text("")
    assert not window.tree.isRowHidden(out.row(), out.parent())
    window.filter_bar.set_text("conv$", "Regex")
    assert [n.path for n in window.filter_bar.matches] == ["backbone/conv"]


def test_details_context_menu_and_plans(qtbot, opened, answers, tmp_path):
    window = opened
    bn = window.document.layer("backbone/bn")
    window.tree.select_nodes([bn])
    window.editor.set_trainable([bn], False)
    assert "Inference mode" in window.details.toPlainText()
    assert "moving_mean" in window.details.toPlainText()
    dense = window.document.layer("head_dense")
    menu = window.actions.context_menu(dense, window.model.stop_points(dense), set())
    assert "Stop Gradient After This Layer" in [a.text() for a in menu.actions()]
    answers["plan_path"] = str(tmp_path / "plan.json")
    window.save_plan_file()
    plan = json.loads((tmp_path / "plan.json").read_text())
    assert plan["freezestudio_plan"] == 1
    window.editor.set_trainable([bn], True)
    assert window.apply_plan_file(str(tmp_path / "plan.json"))
    assert window.document.trainable_state(bn) is False
    window.actions.undo.trigger()
    assert window.document.trainable_state(bn) is True
    # the fine-tuning keys are applied (and undoable)
    plan["lr_multipliers"] = [{"match": "head_dense", "value": 0.5}]
    (tmp_path / "later.json").write_text(json.dumps(plan))
    assert window.apply_plan_file(str(tmp_path / "later.json"))
    assert window.document.fine_tuning.lr_multipliers == (("head_dense", 0.5),)
    window.actions.undo.trigger()
    assert not window.document.fine_tuning


def test_geometry_is_remembered(qtbot, window, settings):
    window.resize(900, 640)
    window.close()
    assert settings.value("window/geometry") is not None


def test_freeze_upstream_from_the_details_link(qtbot, opened):
    from PySide6.QtCore import QUrl

    from freezestudio.gui.editor.details import UPSTREAM_LINK

    window = opened
    dense = window.document.layer("head_dense")
    window.editor.set_stop_points(add=["head_dense"])
    window.tree.select_nodes([dense])
    assert "Freeze everything upstream" in window.details.toPlainText()
    window.details.anchorClicked.emit(QUrl(UPSTREAM_LINK))
    document = window.document
    assert document.trainable_state(document.layer("backbone")) is False
    assert document.trainable_state(dense) is False  # cut off: its own weights too
    assert document.trainable_state(document.layer("out")) is True
    assert window.actions.undo.text() == "&Undo Freeze upstream of head_dense"


def test_a_demo_model_opens_from_the_start_page(qtbot, window):
    demos = window.start_page.demos
    item = next(demos.item(i) for i in range(demos.count())
                if demos.item(i).text().startswith("text_classifier.keras"))
    with qtbot.waitSignal(window.load_finished, timeout=60_000):
        demos.itemActivated.emit(item)
    assert window.document.layer("embedding").class_name == "Embedding"


def test_a_second_call_point_is_toggled_by_its_own_box(qtbot, window, model_files, open_and_wait):
    assert open_and_wait(qtbot, window, model_files["shared"])
    rect = window.tree.visualRect(node_index(window, "shared", STOP))
    second = QPoint(rect.left() + GAP + (BOX + GAP) + BOX // 2, rect.center().y())
    QTest.mouseClick(window.tree.viewport(), Qt.MouseButton.LeftButton,
                     Qt.KeyboardModifier.NoModifier, second)
    assert window.document.stop_points == ["shared[1]"]


def test_generic_savedmodel_folder_open_edit_and_save(qtbot, window, answers, tmp_path,
                                                      open_and_wait):
    import tensorflow as tf

    class Module(tf.Module):
        def __init__(self):
            super().__init__()
            with tf.name_scope("dense"):
                self.kernel = tf.Variable(tf.ones((3, 2)), name="kernel")
                self.bias = tf.Variable(tf.zeros((2,)), name="bias")

        @tf.function(input_signature=[tf.TensorSpec((None, 3), tf.float32)])
        def __call__(self, x):
            return tf.matmul(x, self.kernel) + self.bias

    folder = tmp_path / "generic"
    module = Module()
    tf.saved_model.save(module, str(folder), signatures=module.__call__)
    assert open_and_wait(qtbot, window, folder)
    document = window.document
    assert document.source_format == "savedmodel"
    bias = next(w for w in document.weights if w.key.startswith("bias"))
    window.model.setData(window.model.index_of(bias, FREEZE), Qt.CheckState.Checked,
                         Qt.ItemDataRole.CheckStateRole)
    answers["save_path"] = str(tmp_path / "generic_out")
    with qtbot.waitSignal(window.saved, timeout=60_000):
        window.save_as()
    assert answers["asked"] == ["save_path"]
    reopened = open_document(tmp_path / "generic_out")
    assert not reopened.is_weight_trainable(reopened.weight(bias.id))


def test_a_portable_copy_drops_stop_gradients_and_keeps_the_document(qtbot, opened, answers,
                                                                      tmp_path):
    window = opened
    window.editor.set_stop_points(add=["head_dense"])
    answers["save_path"] = str(tmp_path / "portable.keras")
    with qtbot.waitSignal(window.saved, timeout=60_000):
        assert window.save_portable_copy()
    assert window.isWindowModified()  # the document itself is still unsaved
    assert window.document.stop_points == ["head_dense"]
    assert open_document(tmp_path / "portable.keras").stop_points == []


def test_the_recompile_marker_shows_only_after_an_edit(qtbot, opened, tmp_path):
    """Right after opening it would read like an error; after an edit it says what to do
    when the model is trained with Keras; saving (or undoing back to the file) hides it."""
    from freezestudio.gui.window.summary import RECOMPILE_TEXT

    window = opened
    marker, icon = window.summary.recompile, window.summary.recompile_icon
    assert window.document.needs_recompile, "the core flag is raised on opening"
    assert not marker.isVisibleTo(window) and not icon.isVisibleTo(window)
    tree_at = window.tree.geometry()
    window.editor.set_trainable([window.document.layer("head_dense")], False)
    assert marker.isVisibleTo(window) and icon.isVisibleTo(window)
    qtbot.wait(50)  # the layout has run
    assert window.tree.geometry() == tree_at, "the marker moved the tree (a whole repaint)"
    assert marker.text() == RECOMPILE_TEXT == "Edited: recompile before training with Keras"
    assert "compile()" in marker.toolTip() and "FreezeStudio's own training" in \
        marker.toolTip()
    window.actions.undo.trigger()
    assert not marker.isVisibleTo(window), "back to the file: nothing to recompile"
    window.actions.redo.trigger()
    assert marker.isVisibleTo(window)
    with qtbot.waitSignal(window.saved, timeout=60_000):
        window.save_to(str(tmp_path / "edited.keras"))
    assert not marker.isVisibleTo(window), "the saved file compiles its edits on loading"
    window.close_model()
    assert not marker.isVisibleTo(window)
