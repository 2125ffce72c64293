"""Config-first opening in the window: the tree from the file's config shows while the
model is still loading (held back here by a real task queued before it on the window's
worker), edits, saving, training and export wait for it, and the loaded model then takes
over the view as the user left it. The tree paints before the load starts (the import
gate), and choosing a file imports nothing before its tree is on screen."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading

from PySide6.QtCore import QEvent, QObject

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


class _FirstPaint(QObject):
    """Notes the window's state at the tree's first paint with a document."""

    def __init__(self, window):
        super().__init__()
        self.window, self.seen = window, None
        window.tree.viewport().installEventFilter(self)

    def eventFilter(self, watched, event) -> bool:
        window = self.window
        if event.type() == QEvent.Type.Paint and self.seen is None and window.document:
            self.seen = {"described": is_described(window.document.model),
                         "model_ready": window.model_ready,
                         "gate_open": window.import_gate.is_open}
        return False


def test_the_config_tree_paints_before_the_load_starts(qtbot, window, model_files):
    first = _FirstPaint(window)
    window.open_path(model_files["nested"])
    qtbot.waitUntil(lambda: window.model_ready and window.document is not None,
                    timeout=TIMEOUT_MS)
    # the load waits at the gate the painted tree opens: it never races the read
    assert first.seen == {"described": True, "model_ready": False, "gate_open": False}
    assert window.import_gate.is_open and not is_described(window.document.model)


def test_the_gate_opens_when_the_config_cannot_tell_or_loading_is_cancelled(
        qtbot, window, model_files):
    release = _hold_the_worker(window)
    try:
        window.open_path(model_files["nested_h5"])  # not described: read gives None
        qtbot.waitUntil(lambda: window.import_gate.is_open, timeout=TIMEOUT_MS)
        window.open_path(model_files["nested"])
        assert not window.import_gate.is_open
        window.cancel_loading()
        assert window.import_gate.is_open
    finally:
        release.set()


FRESH_OPEN = """
import json, os, sys, time
from PySide6.QtCore import QEvent, QObject, QSettings
from PySide6.QtWidgets import QApplication
from freezestudio.gui.window.main_window import MainWindow
from freezestudio.gui.window.settings import Settings

app = QApplication([])
settings = Settings(QSettings(sys.argv[2], QSettings.Format.IniFormat))
window = MainWindow(settings=settings, import_tf=False)
window.show()
while window.runner.is_busy():  # the start-up imports of the reader's modules
    app.processEvents()
    time.sleep(0.01)
before = set(sys.modules)

class Watch(QObject):
    def eventFilter(self, watched, event):
        if event.type() == QEvent.Type.Paint and window.document is not None:
            print(json.dumps({"model_ready": window.model_ready,
                              "imported": sorted(set(sys.modules) - before)}), flush=True)
            os._exit(0)
        return False

watch = Watch()
window.tree.viewport().installEventFilter(watch)
window.open_path(sys.argv[1])
app.exec()
"""


def test_nothing_is_imported_between_choosing_a_file_and_its_painted_tree(tmp_path,
                                                                           model_files):
    """In a fresh process: the load (which imports TensorFlow) has not started when the
    config's tree first paints, and reading and painting it import no module (the import
    gate could hold one of them behind the TensorFlow import)."""
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", TF_CPP_MIN_LOG_LEVEL="2")
    done = subprocess.run([sys.executable, "-c", FRESH_OPEN, str(model_files["nested"]),
                           str(tmp_path / "settings.ini")], env=env, capture_output=True,
                          text=True, timeout=TIMEOUT_MS / 1000)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen == {"model_ready": False, "imported": []}
