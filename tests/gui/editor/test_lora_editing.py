"""LoRA in the GUI: the Adapter column (shown, edited), the attention context-menu action,
the summary's trainable share, and exact undo/redo of adapter edits."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import Qt

from freezestudio.gui.editor.tree_model import ADAPTER, NAME
from freezestudio.gui.window.actions import ATTENTION_ACTION


@pytest.fixture(scope="module")
def attention_file(keras, tmp_path_factory):
    import model_builders as mb

    path = tmp_path_factory.mktemp("lora_gui") / "attention.keras"
    mb.attention_model().save(path)
    return path


@pytest.fixture
def tree(tree_over, attention_file):
    return tree_over(attention_file)


def cell(model, address, column=ADAPTER, role=Qt.ItemDataRole.DisplayRole):
    return model.index_of(model.document.find(address), column).data(role)


def state(document):
    """What an adapter edit changes: rows, freeze state, Keras's trainable set, values."""
    return (tuple(w.id for w in document.weights), document.snapshot(),
            tuple(sorted(v.path for v in document.model.trainable_weights)),
            tuple((a.id, a.rank, a.alpha) for a in document.adapters()),
            tuple(w.variable.numpy().tobytes() for w in document.weights))


def test_the_adapter_column_is_editable_where_a_layer_takes_one(tree, qtmodeltester):
    model, editor, document = tree
    assert model.headerData(ADAPTER, Qt.Orientation.Horizontal) == "Adapter"
    editable = Qt.ItemFlag.ItemIsEditable
    kernel = model.index_of(document.weight("mha:query/kernel"), ADAPTER)
    assert kernel.flags() & editable and cell(model, "mha:query/kernel") == ""
    assert not model.index_of(document.weight("mha:query/bias"), ADAPTER).flags() & editable
    assert not model.index_of(document.layer("norm"), ADAPTER).flags() & editable
    assert model.setData(kernel, "4", Qt.ItemDataRole.EditRole)
    assert cell(model, "mha:query/kernel") == "4" and cell(model, "mha") == "4"
    assert cell(model, "mha:query/lora_kernel_a", NAME) == "query/lora_kernel_a"
    assert [(a.id, a.rank) for a in document.adapters()] == [("mha:query/kernel", 4)]
    qtmodeltester.check(model)  # rows were added: the model is still consistent
    dense = model.index_of(document.layer("dense"), ADAPTER)
    assert model.setData(dense, "2", Qt.ItemDataRole.EditRole)
    assert model.setData(model.index_of(document.layer("dense"), ADAPTER), "0",
                         Qt.ItemDataRole.EditRole)
    assert [a.id for a in document.adapters()] == ["mha:query/kernel"]
    assert not model.setData(model.index_of(document.layer("dense"), ADAPTER), "x",
                             Qt.ItemDataRole.EditRole)


def test_adapter_edits_undo_and_redo_exactly(tree):
    model, editor, document = tree
    states = [state(document)]
    edits = [lambda: editor.add_attention_adapters(document.layer("mha"), rank=2),
             lambda: editor.set_trainable([document.layer("dense")], False),
             lambda: editor.add_adapters([document.layer("dense")], 1)]
    for run in edits:
        assert run()
        states.append(state(document))
    for adapter in document.adapters():  # as after training: live adapters
        b = adapter.layer.lora_kernel_b
        b.assign(np.random.default_rng(0).normal(size=b.shape).astype("float32"))
    states[-1] = state(document)
    assert editor.remove_adapters([document.layer("mha")], merge=True)
    states.append(state(document))
    merged = {w.id: w.variable.numpy().copy() for w in document.layer("mha").weights}
    assert [a.id for a in document.adapters()] == ["dense:kernel"]
    assert len(set(states)) == len(states)
    for expected in reversed(states[:-1]):
        editor.stack.undo()
        assert state(document) == expected
    for expected in states[1:]:  # a redone add starts a fresh adapter (A random, B zero)
        editor.stack.redo()
        assert state(document)[:4] == expected[:4]
    for w_id, value in merged.items():  # the merged kernels come back bit for bit
        np.testing.assert_array_equal(document.weight(w_id).variable.numpy(), value)


def test_context_menu_and_summary_in_the_window(qtbot, window, open_and_wait,
                                                 attention_file):
    assert open_and_wait(qtbot, window, attention_file)
    root = window.document.root
    menu = window.actions.context_menu(root, [], set())
    [action] = [a for a in menu.actions() if a.text() == ATTENTION_ACTION]
    action.trigger()
    assert [a.id for a in window.document.adapters()] == ["mha:query/kernel",
                                                          "mha:value/kernel"]
    window.summary.update_from(window.document, edited=True)
    counts = window.document.counts()
    share = f"{counts.trainable:,} of {counts.params:,} trainable: " \
            f"{100 * counts.trainable / counts.params:.0f}%"
    assert share in window.summary.text()
    menu = window.actions.context_menu(window.document.layer("mha"), [], set())
    assert "Merge LoRA Adapters Into Kernels" in [a.text() for a in menu.actions()]
    window.actions.undo.trigger()
    assert window.document.adapters() == []
