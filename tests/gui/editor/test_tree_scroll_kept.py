"""An adapter edit keeps the tree's scroll position (the rows are rebuilt under it)."""

from __future__ import annotations


def test_adapter_rows_keep_the_scroll_position(qtbot, tree_over, attention_file):
    from freezestudio.gui.editor.tree_view import LayerTreeView

    model, editor, document = tree_over(attention_file)
    view = LayerTreeView()
    qtbot.addWidget(view)
    view.setModel(model)
    view.resize(400, 90)  # a few rows visible: the expanded tree scrolls
    view.show()
    qtbot.waitExposed(view)
    view.expandAll()
    bar = view.verticalScrollBar()
    qtbot.waitUntil(lambda: bar.maximum() > 2)
    bar.setValue(bar.maximum() - 1)
    scrolled = bar.value()
    assert scrolled > 0
    assert editor.add_adapters([document.layer("dense")], 2)
    qtbot.wait(100)  # the view lays the rows out again after the reset
    assert bar.value() == scrolled
    editor.stack.undo()
    qtbot.wait(100)
    assert bar.value() == scrolled
