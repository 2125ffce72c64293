"""The tree's "LR x" column: each node's learning-rate multiplier, edited in place on
layers and containers (undoable), inherited values greyed."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication, QPalette

from freezestudio.gui.editor.tree_cells import LR


def _cell(window, node, role=Qt.ItemDataRole.DisplayRole):
    return window.model.data(window.model.index_of(node, LR), role)


def test_editing_a_container_multiplier_is_inherited_and_undoable(qtbot, opened):
    window, document = opened, opened.document
    backbone = next(n for n in document.root.children if n.is_container)
    inner = next(n for n in backbone.walk() if n is not backbone and n.weights)
    weight = inner.weights[0]
    grey = QGuiApplication.palette().color(QPalette.ColorRole.PlaceholderText)
    assert _cell(window, inner) == "1" and _cell(window, inner, Qt.ItemDataRole.ForegroundRole) \
        == grey
    index = window.model.index_of(backbone, LR)
    assert window.model.flags(index) & Qt.ItemFlag.ItemIsEditable
    assert not window.model.flags(window.model.index_of(weight, LR)) & Qt.ItemFlag.ItemIsEditable
    assert window.model.setData(index, "x0.1", Qt.ItemDataRole.EditRole)
    window.model.flush()
    assert document.fine_tuning.lr_multipliers == ((backbone.path, 0.1),)
    assert _cell(window, backbone) == "0.1"
    assert _cell(window, backbone, Qt.ItemDataRole.ForegroundRole) is None  # its own rule
    assert _cell(window, inner) == "0.1" and _cell(window, weight) == "0.1"
    assert _cell(window, inner, Qt.ItemDataRole.ForegroundRole) == grey  # inherited
    # a layer inside gets its own value: the container shows "mixed"
    assert window.model.setData(window.model.index_of(inner, LR), "2",
                                Qt.ItemDataRole.EditRole)
    window.model.flush()
    assert _cell(window, inner) == "2" and _cell(window, backbone) == "mixed"
    window.editor.stack.undo()
    window.model.flush()
    assert _cell(window, inner) == "0.1"
    window.editor.stack.undo()
    window.model.flush()
    assert not document.fine_tuning and _cell(window, backbone) == "1"
    # not a number, or not > 0: refused with a message, nothing changes
    messages = []
    window.editor.failed.connect(messages.append)
    assert not window.model.setData(index, "fast", Qt.ItemDataRole.EditRole)
    assert not window.model.setData(index, "0", Qt.ItemDataRole.EditRole)
    assert len(messages) == 2 and not document.fine_tuning
