"""LoRA in the GUI: the Adapter column (shown, edited), the attention context-menu action,
the summary's trainable share, and exact undo/redo of adapter edits."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import Qt

from freezestudio.gui.editor.tree_model import ADAPTER, NAME
from freezestudio.gui.window.actions import ATTENTION_ACTION


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
    for adapter in document.adapters():  # as after training: live adapters (not an edit)
        b = adapter.layer.lora_kernel_b
        b.assign(np.random.default_rng(0).normal(size=b.shape).astype("float32"))
    live = state(document)
    assert editor.remove_adapters([document.layer("mha")], merge=True)
    merged = state(document)
    assert [a.id for a in document.adapters()] == ["dense:kernel"]
    assert len({*states, live, merged}) == len(states) + 2
    editor.stack.undo()
    assert state(document) == live  # the merge undone: the live adapters bit for bit
    for expected in reversed(states[:-1]):
        editor.stack.undo()
        assert state(document) == expected
    for expected in [*states[1:], merged]:  # every redo exact, A's random values too
        editor.stack.redo()
        assert state(document) == expected


def test_a_redone_add_restores_the_identical_adapter(tree):
    model, editor, document = tree
    assert editor.add_adapters([document.layer("dense")], 3, alpha=6.0)
    assert editor.add_attention_adapters(document.layer("mha"), rank=2)
    added = {a.id: (a.rank, a.alpha, a.a.variable.numpy().copy(), a.b.variable.numpy().copy())
             for a in document.adapters()}
    assert sorted(added) == ["dense:kernel", "mha:query/kernel", "mha:value/kernel"]
    assert np.any(added["dense:kernel"][2])  # A is he-uniform: a fresh one would differ
    for _ in range(2):
        editor.stack.undo()
    assert document.adapters() == []
    for _ in range(2):
        editor.stack.redo()
    again = {a.id: a for a in document.adapters()}
    assert sorted(again) == sorted(added)
    for key, (rank, alpha, a, b) in added.items():
        adapter = again[key]
        assert (adapter.rank, adapter.alpha) == (rank, alpha)
        assert adapter.layer.lora_alpha == alpha
        assert adapter.a.variable.numpy().tobytes() == a.tobytes()
        assert adapter.b.variable.numpy().tobytes() == b.tobytes()


def test_adapter_rows_keep_the_tree_expanded_and_selected(qtbot, tree):
    from freezestudio.gui.editor.tree_view import LayerTreeView

    model, editor, document = tree
    view = LayerTreeView()
    qtbot.addWidget(view)
    view.setModel(model)
    view.show()
    for address in ("", "mha", "dense"):
        view.expand(model.index_of(document.find(address)))
    view.select_nodes([document.weight("dense:bias"), document.layer("norm")])
    view.selectionModel().setCurrentIndex(model.index_of(document.weight("dense:bias")),
                                          view.selectionModel().SelectionFlag.NoUpdate)
    shown = view.view_state()
    assert shown == (["", "mha", "dense"], ["norm", "dense:bias"], "dense:bias")
    assert editor.add_adapters([document.layer("dense")], 2)  # rows added under dense
    assert model.index_of(document.weight("dense:lora_kernel_a")).isValid()
    assert view.view_state() == shown
    editor.stack.undo()  # rows removed again
    assert view.view_state() == shown
    editor.stack.redo()
    view.select_nodes([document.weight("dense:lora_kernel_b"), document.layer("norm")])
    editor.stack.undo()  # a selected row goes: the rest of the selection stays
    assert view.view_state()[:2] == (["", "mha", "dense"], ["norm"])


def test_context_menu_and_summary_in_the_window(qtbot, window, open_and_wait,
                                                 attention_file):
    assert open_and_wait(qtbot, window, attention_file)
    root = window.document.root
    window.tree.expand(window.model.index_of(window.document.layer("mha")))
    window.tree.select_nodes([window.document.weight("mha:query/kernel")])
    shown = window.tree.view_state()
    menu = window.actions.context_menu(root, [], set())
    [action] = [a for a in menu.actions() if a.text() == ATTENTION_ACTION]
    action.trigger()
    assert [a.id for a in window.document.adapters()] == ["mha:query/kernel",
                                                          "mha:value/kernel"]
    assert window.tree.view_state() == shown  # the window's tree kept as it was
    assert window.details.node is window.document.weight("mha:query/kernel")  # shown again
    window.summary.update_from(window.document, edited=True)
    counts = window.document.counts()
    share = f"{counts.trainable:,} of {counts.params:,} trainable: " \
            f"{100 * counts.trainable / counts.params:.0f}%"
    assert share in window.summary.text()
    menu = window.actions.context_menu(window.document.layer("mha"), [], set())
    assert "Merge LoRA Adapters Into Kernels" in [a.text() for a in menu.actions()]
    window.actions.undo.trigger()
    assert window.document.adapters() == []


def test_the_details_pane_shows_the_merged_kernels_values(qtbot, window, open_and_wait,
                                                          attention_file):
    """Merging live adapters writes the kernel: the details pane's min/max/mean/std are the
    new values (a new pane's), after the merge and after its undo."""
    from freezestudio.gui.editor.details import DetailsPane

    assert open_and_wait(qtbot, window, attention_file)
    document = window.document
    assert window.editor.add_adapters([document.layer("dense")], 2)
    b = document.adapters()[0].layer.lora_kernel_b
    b.assign(np.random.default_rng(0).normal(size=b.shape).astype("float32"))
    kernel = document.weight("dense:kernel")
    window.tree.selectionModel().setCurrentIndex(
        window.model.index_of(kernel), window.tree.selectionModel().SelectionFlag.NoUpdate)
    before = window.details.toPlainText()
    for step in (lambda: window.editor.remove_adapters([document.layer("dense")], merge=True),
                 window.editor.stack.undo):
        step()
        kernel = document.weight("dense:kernel")
        assert window.details.node is kernel
        fresh = DetailsPane()  # its own statistics, read from the values now
        qtbot.addWidget(fresh)
        fresh.show_node(document, kernel, [])
        assert window.details.toPlainText() == fresh.toPlainText()
    assert window.details.toPlainText() == before  # the undo gave the kernel back
