"""The tree model is bound to the core document both ways (no copy of the state)."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QStandardItemModel

from freezestudio.core.files.loading import open_document
from freezestudio.gui.editor.tree_model import (
    CLASS,
    FREEZE,
    GRADIENT,
    NAME,
    PARAMS,
    POINTS_ROLE,
    SHAPE,
    STOP,
    TRAINABLE,
    LayerTreeModel,
)
from freezestudio.gui.editor.undo import Editor

CHECKED, UNCHECKED, PARTIAL = (Qt.CheckState.Checked, Qt.CheckState.Unchecked,
                               Qt.CheckState.PartiallyChecked)
CHECK = Qt.ItemDataRole.CheckStateRole


@pytest.fixture
def tree(tree_over, model_files):
    """A model + editor over the nested model (no window)."""
    return tree_over(model_files["nested"])


def at(model, address, column=NAME):
    node = model.document.find(address)
    return model.index_of(node, column)


def keras_trainable_paths(document) -> set[str]:
    return {v.path for v in document.model.trainable_weights}


def test_is_an_item_model_over_the_core_nodes(tree, qtmodeltester):
    model, _, document = tree
    assert not isinstance(model, QStandardItemModel)
    qtmodeltester.check(model)
    root = model.index(0, 0)
    assert model.node(root) is document.root
    assert model.rowCount(root) == len(document.root.children)
    dense = at(model, "head_dense")
    assert model.node(dense) is document.layer("head_dense")
    # a leaf layer's children are its weights
    assert [model.data(model.index(r, NAME, dense)) for r in range(model.rowCount(dense))] \
        == ["kernel", "bias"]
    assert model.data(dense.siblingAtColumn(CLASS)) == "Dense"
    assert model.data(dense.siblingAtColumn(SHAPE)) == "(None, 5)"
    assert model.data(dense.siblingAtColumn(PARAMS)) == "25"
    assert model.data(dense.siblingAtColumn(TRAINABLE)) == "25"


def test_ticking_a_layer_freezes_it_in_the_core_and_in_keras(tree):
    model, editor, document = tree
    index = at(model, "head_dense", FREEZE)
    assert model.data(index, CHECK) == UNCHECKED
    assert model.setData(index, CHECKED, CHECK)
    layer = document.layer("head_dense")
    assert document.trainable_state(layer) is False
    assert layer.layer.trainable is False
    assert not {w.variable.path for w in layer.weights} & keras_trainable_paths(document)
    assert model.data(index, CHECK) == CHECKED
    assert model.data(index.siblingAtColumn(TRAINABLE)) == "0"
    assert model.setData(index, UNCHECKED.value, CHECK)  # ints work too (as views send them)
    assert document.trainable_state(layer) is True
    assert layer.layer.trainable is True
    assert {w.variable.path for w in layer.weights} <= keras_trainable_paths(document)
    assert editor.stack.count() == 2


def test_ticking_one_weight_freezes_only_that_variable(tree):
    model, _, document = tree
    bias = at(model, "head_dense:bias", FREEZE)
    model.setData(bias, CHECKED, CHECK)
    weight = document.weight("head_dense:bias")
    kernel = document.weight("head_dense:kernel")
    assert weight.variable.trainable is False and kernel.variable.trainable is True
    assert weight.variable.path not in keras_trainable_paths(document)
    assert kernel.variable.path in keras_trainable_paths(document)
    assert model.data(at(model, "head_dense", FREEZE), CHECK) == PARTIAL
    assert model.data(model.index(0, FREEZE), CHECK) == PARTIAL


def test_containers_are_tri_state_both_ways(tree):
    model, _, document = tree
    backbone = at(model, "backbone", FREEZE)
    assert model.data(backbone, CHECK) == UNCHECKED
    model.setData(at(model, "backbone/conv", FREEZE), CHECKED, CHECK)
    assert model.data(backbone, CHECK) == PARTIAL
    # ticking a partial container freezes everything inside it
    model.setData(backbone, CHECKED, CHECK)
    assert model.data(backbone, CHECK) == CHECKED
    for path in ("backbone/conv", "backbone/bn", "backbone/relu"):
        assert model.data(at(model, path, FREEZE), CHECK) == CHECKED
        assert document.layer(path).layer.trainable is False
    assert document.layer("backbone").layer.trainable is False
    model.setData(backbone, UNCHECKED, CHECK)
    assert all(document.layer(p).layer.trainable for p in ("backbone", "backbone/conv"))
    assert model.data(backbone, CHECK) == UNCHECKED


def test_moving_statistics_are_shown_but_not_checkable(tree):
    model, _, document = tree
    mean = at(model, "backbone/bn:moving_mean", FREEZE)
    assert model.data(mean, CHECK) == CHECKED
    assert not model.flags(mean) & Qt.ItemFlag.ItemIsUserCheckable
    assert not model.setData(mean, UNCHECKED, CHECK)
    gamma = at(model, "backbone/bn:gamma", FREEZE)
    assert model.flags(gamma) & Qt.ItemFlag.ItemIsUserCheckable


def test_a_core_edit_updates_the_view_without_a_reset(qtbot, tree):
    model, _, document = tree
    resets = []
    model.modelReset.connect(lambda: resets.append(1))
    index = at(model, "out", FREEZE)
    changed = []
    model.dataChanged.connect(lambda a, b, roles: changed.append((a, b)))
    with qtbot.waitSignal(model.refreshed, timeout=2000):
        document.set_trainable([document.layer("out")], False)  # straight through the core
    assert model.data(index, CHECK) == CHECKED
    assert model.data(index.siblingAtColumn(GRADIENT)) == "none"
    assert any(a.parent() == index.parent() and a.row() <= index.row() <= b.row()
               and b.column() >= FREEZE for a, b in changed)
    assert not resets


def test_gradient_column_explains_a_stop_gradient(tree):
    model, editor, document = tree
    dense = at(model, "head_dense", GRADIENT)
    assert model.data(dense) == "receives"
    assert model.data(at(model, "head_dense", STOP), POINTS_ROLE) == [("head_dense", False)]
    assert model.setData(at(model, "head_dense", STOP), CHECKED, CHECK)
    assert document.stop_points == ["head_dense"]
    assert any(getattr(layer, "freezestudio_stop_gradient", False)
               for layer in document.model.layers)
    assert model.data(dense) == "none"
    assert model.data(at(model, "head_dense", STOP), POINTS_ROLE) == [("head_dense", True)]
    tip = model.data(dense, Qt.ItemDataRole.ToolTipRole)
    assert "stop-gradient" in tip and "head_dense" in tip
    assert model.data(at(model, "backbone/conv", GRADIENT)) == "none"
    assert model.data(at(model, "out", GRADIENT)) == "receives"
    editor.stack.undo()
    assert document.stop_points == []
    assert model.data(dense) == "receives"


def test_a_shared_layer_has_one_toggle_per_call(qtbot, model_files):
    document = open_document(model_files["shared"])
    editor = Editor()
    model = LayerTreeModel(editor)
    editor.set_document(document)
    model.set_document(document)
    shared = at(model, "shared", STOP)
    assert [a for a, _ in model.data(shared, POINTS_ROLE)] == ["shared[0]", "shared[1]"]
    editor.toggle_stop_point("shared[1]")
    assert document.stop_points == ["shared[1]"]
    assert model.data(shared, POINTS_ROLE) == [("shared[0]", False), ("shared[1]", True)]
    assert model.data(shared, CHECK) == PARTIAL
    # one call still reaches the output: the shared weights still receive gradient
    assert model.data(at(model, "shared", GRADIENT)) == "receives"
    model.setData(shared, CHECKED, CHECK)
    assert document.stop_points == ["shared[0]", "shared[1]"]
    assert model.data(at(model, "shared", GRADIENT)) == "none"
    editor.dispose()  # stops its rebuild thread


def test_filter_matches_are_highlighted(tree):
    model, _, document = tree
    node = document.layer("head_dense")
    before = model.data(model.index_of(node), Qt.ItemDataRole.BackgroundRole)
    model.set_matches([node])
    assert model.data(model.index_of(node), Qt.ItemDataRole.BackgroundRole) != before


def test_the_cells_agree_with_the_document_after_edits(tree):
    """The cell cache is dropped for exactly what an edit touches: after freezing a
    container, unfreezing one weight inside it and a stop-gradient point, every row shows
    what the document answers."""
    model, editor, document = tree
    for edit in (lambda: editor.set_trainable([document.layer("backbone")], False),
                 lambda: editor.set_trainable([document.weight("backbone/conv:bias")], True),
                 lambda: editor.set_stop_points(add=["head_dense"])):
        for node in model.iter_nodes():  # fill the cache before the edit
            model.data(model.index_of(node, FREEZE), CHECK)
            model.data(model.index_of(node, GRADIENT))
        edit()
        model.flush()
        for node in model.iter_nodes():
            check = model.data(model.index_of(node, FREEZE), CHECK)
            state = document.trainable_state(node)
            if getattr(node, "freezable", True):
                assert check == {True: UNCHECKED, False: CHECKED, "partial": PARTIAL}[state], node
            if hasattr(node, "children"):
                counts = document.counts(node)
                shown = model.data(model.index_of(node, TRAINABLE))
                assert shown == (f"{counts.trainable:,}" if counts.params else ""), node


def test_a_freeze_repaints_only_the_rows_it_touches(tree, qtbot):
    model, editor, document = tree
    changed = []
    model.dataChanged.connect(lambda first, last, roles: changed.append(
        {model.node(first.siblingAtRow(r)).__class__.__name__ + ":" +
         getattr(model.node(first.siblingAtRow(r)), "path", "")
         or model.node(first.siblingAtRow(r)).id for r in range(first.row(), last.row() + 1)}))
    head = document.layer("head_dense")
    editor.set_trainable([head], False)
    model.flush()
    rows = set().union(*changed)
    assert "LayerNode:head_dense" in rows and "LayerNode:" in rows  # itself and the top row
    assert "LayerNode:backbone" not in rows  # a sibling the freeze did not touch


def test_switching_documents_disconnects_the_old_one(tree, model_files):
    model, editor, document = tree
    other = open_document(model_files["nested"])
    model.set_document(other)
    editor.set_document(other)
    changes = []
    document.add_listener(changes.append)
    document.set_trainable([document.layer("head_dense")], False)  # the old one, edited
    assert changes and not model._dirty  # the model no longer listens to it


