"""Edits through the Editor: undo/redo give back the exact state, bulk edits, refusals."""

from __future__ import annotations

import pytest

from freezestudio.core.edits.plans import Plan, Rule
from freezestudio.core.files.loading import open_document
from freezestudio.gui.editor.undo import Editor


@pytest.fixture
def edit(qtbot, model_files):
    document = open_document(model_files["nested"])
    editor = Editor()
    editor.set_document(document)
    yield editor, document
    editor.dispose()


def state(document):
    """Everything an edit can change: core snapshot, Keras flags, Keras trainable set."""
    return (
        document.snapshot(),
        tuple((n.path, bool(n.layer.trainable)) for n in document.root.walk()),
        tuple(sorted(v.path for v in document.model.trainable_weights)),
        tuple(document.stop_points),
    )


def test_undo_and_redo_restore_the_exact_state(edit):
    editor, document = edit
    states = [state(document)]
    edits = [
        lambda: editor.set_trainable([document.layer("backbone")], False),
        lambda: editor.set_trainable([document.weight("backbone/conv:bias")], True),
        lambda: editor.set_stop_points(add=["head_dense"]),
        lambda: editor.freeze_upstream(["head_dense"]),
        lambda: editor.apply_plan(Plan([Rule("out:bias", False)], []), "p.json"),
        lambda: editor.set_stop_points(remove=["head_dense"]),
    ]
    for run in edits:
        assert run()
        states.append(state(document))
    assert len(set(states)) == len(states), "every edit changed something"
    stack = editor.stack
    for expected in reversed(states[:-1]):
        stack.undo()
        assert state(document) == expected
    for expected in states[1:]:
        stack.redo()
        assert state(document) == expected


def test_the_undo_text_says_what_will_be_undone(edit):
    editor, document = edit
    editor.set_trainable([document.layer("head_dense")], False)
    assert editor.stack.undoText() == "Freeze head_dense"
    editor.set_class_trainable("Dense", False)
    assert editor.stack.undoText() == "Freeze all Dense (2)"
    editor.set_stop_points(add=["head_dense"])
    assert editor.stack.undoText() == "Add stop-gradient after head_dense"


def test_an_edit_that_changes_nothing_is_not_recorded(edit):
    editor, document = edit
    assert not editor.set_trainable([document.layer("head_dropout")], True)
    assert editor.stack.count() == 0


def test_a_refused_edit_reports_and_leaves_the_document_alone(qtbot, edit):
    editor, document = edit
    before = state(document)
    with qtbot.waitSignal(editor.failed) as blocker:
        assert not editor.apply_plan(Plan([Rule("out", False), Rule("nope*", True)], []), "p")
    assert "nope*" in blocker.args[0]
    assert state(document) == before
    assert editor.stack.count() == 0


def test_freeze_up_to_a_layer(edit):
    editor, document = edit
    editor.freeze_up_to(document.layer("head_dense"))
    frozen = {n.path for n in document.root.walk() if document.trainable_state(n) is False}
    assert {"backbone", "backbone/conv", "backbone/bn", "head_dense"} <= frozen
    assert document.trainable_state(document.layer("out")) is True


def test_freeze_by_class_and_toggle(edit):
    editor, document = edit
    editor.set_class_trainable("BatchNormalization", False)
    bn = document.layer("backbone/bn")
    assert document.trainable_state(bn) is False and bn.layer.trainable is False
    assert document.trainable_state(document.layer("backbone/conv")) is True
    editor.toggle([bn, document.layer("out")])  # one trainable -> freeze both
    assert document.trainable_state(document.layer("out")) is False
    editor.toggle([bn, document.layer("out")])  # all frozen -> unfreeze both
    assert document.trainable_state(bn) is True
