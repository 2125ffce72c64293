"""Fixtures of the editor tests: a tree model and editor over a document, no window."""

from __future__ import annotations

import pytest

from freezestudio.core.files.loading import open_document
from freezestudio.gui.editor.tree_model import LayerTreeModel
from freezestudio.gui.editor.undo import Editor


@pytest.fixture
def tree_over(qtbot):
    """`tree_over(path)`: (model, editor, document) over the file, the model flushed
    after every undo-stack step; disposed at teardown."""
    editors = []

    def make(path):
        document = open_document(path)
        editor = Editor()
        model = LayerTreeModel(editor)
        editor.set_document(document)
        model.set_document(document)
        editor.stack.indexChanged.connect(model.flush)
        editors.append(editor)
        return model, editor, document

    yield make
    for editor in editors:
        editor.dispose()
