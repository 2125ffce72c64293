"""Config-first opening in the window: the tree from the file's config shows while the
model is still loading (held back here by a real task queued before it on the window's
worker), edits, saving, training and export wait for it, and the loaded model then takes
over the view as the user left it."""

from __future__ import annotations

import threading

from freezestudio.core.graph.description import is_described
from freezestudio.core.model.summary import document_dict
from freezestudio.gui.window.file_flows import LOADING_MESSAGE

TIMEOUT_MS = 60_000


def _hold_the_worker(window) -> threading.Event:
    """Queues a task that keeps the window's loading thread busy until released."""
    release = threading.Event()
    window.runner.submit(lambda state: release.wait(TIMEOUT_MS / 1000))
    return release


def test_the_tree_shows_before_the_model_has_loaded(qtbot, window, model_files):
    release = _hold_the_worker(window)
    try:
        window.open_path(model_files["nested"])
        qtbot.waitUntil(lambda: window.document is not None, timeout=TIMEOUT_MS)
        described = window.document
        assert is_described(described.model) and not window.model_ready
        assert window.loading_banner.isVisible()
        assert window.pages.currentWidget() is window.editor_page
        assert window.model.rowCount(window.model.index(0, 0)) > 0
        assert window.loaded_document is None  # training and export see no model yet
        assert not window.export.action.isEnabled()
        head = described.layer("head_dense")
        assert not window.editor.set_trainable([head], False)
        assert described.trainable_state(head) is True
        assert window.statusBar().currentMessage() == LOADING_MESSAGE
        assert not window.save_to(str(model_files["nested"].parent / "copy.keras"))
        backbone = described.layer("backbone")
        window.tree.expand(window.model.index_of(backbone))
        window.tree.select_nodes([described.layer("backbone/bn")])
    finally:
        release.set()
    qtbot.waitUntil(lambda: window.model_ready, timeout=TIMEOUT_MS)
    loaded = window.document
    assert loaded is not described and not is_described(loaded.model)
    assert not window.loading_banner.isVisible()
    assert document_dict(loaded) == document_dict(described)  # no other numbers shown
    assert window.tree.isExpanded(window.model.index_of(loaded.layer("backbone")))
    assert window.tree.current_node() is loaded.layer("backbone/bn")
    assert window.export.action.isEnabled()
    assert window.editor.set_trainable([loaded.layer("head_dense")], False)
    assert loaded.trainable_state(loaded.layer("head_dense")) is False


def test_files_the_config_cannot_describe_show_after_loading(qtbot, window, model_files,
                                                             open_and_wait):
    release = _hold_the_worker(window)
    window.open_path(model_files["nested_h5"])
    qtbot.wait(300)
    assert window.document is None and window.pages.currentWidget() is window.busy
    release.set()
    qtbot.waitUntil(lambda: window.document is not None, timeout=TIMEOUT_MS)
    assert window.model_ready and not is_described(window.document.model)


def test_opening_another_file_while_loading_shows_only_the_last(qtbot, window, model_files,
                                                                open_and_wait):
    release = _hold_the_worker(window)
    window.open_path(model_files["nested"])
    qtbot.waitUntil(lambda: window.document is not None, timeout=TIMEOUT_MS)
    release.set()
    assert open_and_wait(qtbot, window, model_files["shared"])
    qtbot.wait(200)
    assert window.model_ready and window.document.root.name == "shared_model"
