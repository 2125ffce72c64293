"""The fine-tuning presets dialog on real models: the blocks core finds, the plan the
CLI's --preset writes, one undoable edit."""

from __future__ import annotations

import json

import pytest
from gui_training import open_session
from PySide6.QtCore import Qt
from PySide6.QtTest import QTest

from freezestudio.cli import main
from freezestudio.core.edits.plans import derive_plan
from freezestudio.core.edits.presets import find_blocks
from freezestudio.core.files.loading import open_document
from freezestudio.gui.training.preset_dialog import PresetDialog
from freezestudio.gui.training.session import install_training


def _saved(build, tmp_path):
    path = tmp_path / "model.keras"
    build().save(path)
    return path


def _cli_plan(path, preset, tmp_path) -> dict:
    plan = tmp_path / "cli_plan.json"
    assert main(["apply", str(path), "-o", str(tmp_path / "cli.keras"), "--preset", preset,
                 "--write-plan", str(plan)]) == 0
    return json.loads(plan.read_text())


def _rows(dialog) -> list:
    return [[dialog.list.topLevelItem(i).text(c) for c in range(3)]
            for i in range(dialog.list.topLevelItemCount())]


def test_gradual_on_mobilenet_v2_lists_the_blocks_writes_the_cli_plan_and_undoes(
        qtbot, window, open_and_wait, tmp_path):
    import model_builders as mb

    path = _saved(mb.mobilenet_v2, tmp_path)
    assert open_and_wait(qtbot, window, path)
    document = window.document
    dialog = PresetDialog(window.editor, window)
    qtbot.addWidget(dialog)
    expected = [b.glob for b in find_blocks(open_document(path))]
    assert expected[0] == "expanded_conv_*" and expected[-1] == "block_16_*"
    rows = _rows(dialog)
    assert [r[0] for r in rows] == expected and len(rows) == 17
    dialog.block_count.setValue(3)
    dialog.from_epoch.setValue(3)
    dialog.factor.setValue(0.2)
    rows = _rows(dialog)
    assert [r[2] for r in rows[-4:]] == ["frozen"] + ["from epoch 3 at LR \u00d70.2"] * 3
    assert dialog.preset_text() == "gradual:blocks=3,from_epoch=3,lr=0.2"
    before = document.snapshot()
    qtbot.mouseClick(dialog.apply_button, Qt.MouseButton.LeftButton)
    assert dialog.result() == PresetDialog.DialogCode.Accepted
    assert window.editor.stack.count() == 1
    assert derive_plan(document).to_dict() == _cli_plan(
        path, "gradual:blocks=3,from_epoch=3,lr=0.2", tmp_path)
    assert document.fine_tuning.schedule[0].from_epoch == 3
    window.editor.stack.undo()
    assert document.snapshot() == before and not document.fine_tuning.schedule


def test_without_blocks_it_says_so_and_takes_globs(qtbot, window, open_and_wait, tmp_path):
    import model_builders as mb

    path = _saved(mb.mlp, tmp_path)
    assert open_and_wait(qtbot, window, path)
    document = window.document
    session = install_training(window)
    session.preset_action.trigger()  # the Training menu's action opens the dialog
    (dialog,) = [d for d in window.findChildren(PresetDialog) if d.isVisible()]
    assert "found no blocks" in dialog.message.text() and dialog.list.topLevelItemCount() == 0
    assert not dialog.apply_button.isEnabled()
    dialog.recipe.setCurrentIndex(dialog.recipe.findData("discriminative"))
    qtbot.keyClicks(dialog.globs, "dense; dense_1")
    qtbot.keyClick(dialog.globs, Qt.Key.Key_Return)  # finds the blocks, applies nothing
    assert dialog.isVisible() and window.editor.stack.count() == 0
    assert [r[0] for r in _rows(dialog)] == ["dense", "dense_1"]
    assert [r[2] for r in _rows(dialog)] == ["LR \u00d70.01", "LR \u00d70.1"]
    assert dialog.ratio.value() == 10
    dialog.ratio.setValue(5)  # the ratio sets the first block's multiplier: 5^-2
    assert dialog.lowest.value() == 0.04 and [r[2] for r in _rows(dialog)] == [
        "LR \u00d70.04", "LR \u00d70.2"]
    dialog.lowest.setValue(0.01)
    before = document.snapshot()
    assert dialog.apply()
    assert derive_plan(document).to_dict() == _cli_plan(
        path, "discriminative:lowest=0.01,globs=dense;dense_1", tmp_path)
    window.editor.stack.undo()
    assert document.snapshot() == before
    window.editor.stack.redo()
    assert document.snapshot() != before


@pytest.fixture
def session(qtbot, window, open_and_wait):
    yield from open_session(qtbot, window, open_and_wait)


def test_the_schedule_tabs_button_applies_into_the_table_and_ctrl_z_restores(
        qtbot, window, session):
    document, table = window.document, session.panel.schedule
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow)
    before = document.snapshot()
    qtbot.mouseClick(table.preset_button, Qt.MouseButton.LeftButton)
    (dialog,) = [d for d in window.findChildren(PresetDialog) if d.isVisible()]
    assert [r[0] for r in _rows(dialog)] == [f"conv_base/block{k}_*" for k in (1, 2, 3)]
    dialog.block_count.setValue(1)
    qtbot.mouseClick(dialog.apply_button, Qt.MouseButton.LeftButton)
    assert not dialog.isVisible() and table.table.rowCount() == 1
    assert [table.table.item(0, c).text() for c in range(3)] == [
        "2", "conv_base/block3_*; conv_base/gap", "0.1"]
    assert window.editor.stack.undoText() == \
        "Apply plan preset gradual:blocks=1,from_epoch=2,lr=0.1"
    QTest.keyClick(window.tree, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert document.snapshot() == before and table.table.rowCount() == 0


def test_a_closed_dialog_is_deleted(qtbot, window, open_and_wait, tmp_path):
    """Every opening made a new dialog: closed, each is gone (not kept hidden on the
    window for the rest of the session)."""
    import model_builders as mb

    assert open_and_wait(qtbot, window, _saved(mb.mlp, tmp_path))
    session = install_training(window)
    for close in (PresetDialog.reject, PresetDialog.close):
        session.preset_action.trigger()
        (dialog,) = window.findChildren(PresetDialog)
        close(dialog)
        qtbot.waitUntil(lambda: not window.findChildren(PresetDialog))
