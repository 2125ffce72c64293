"""A stop-gradient edit rebuilds the graph on the editor's rebuild thread: the event loop
keeps running (measured by a 5 ms timer), the editor is locked meanwhile, and the edit
is the same as a rebuild on the GUI thread (the core's own `set_stop_gradient_points`)."""

from __future__ import annotations

import pytest
from PySide6.QtCore import QEvent, QObject
from stall_meter import StallMeter

from freezestudio.core.edits.stop_gradient import set_stop_gradient_points
from freezestudio.core.files.loading import open_document

TOGGLE_STALL_LIMIT_MS = 50
NASNET_LOAD_TIMEOUT_MS = 300_000  # 771 layers; minutes on a loaded 2-core machine


def test_the_editor_is_locked_while_the_graph_is_rebuilt(qtbot, opened):
    window = opened
    seen = []
    window.editor.rebuilding_changed.connect(
        lambda busy: seen.append((busy, not window.editor_lock.active, busy and
                                  window.editor.set_trainable([window.document.layer("out")],
                                                              False))))
    assert window.editor.set_stop_points(add=["head_dense"])
    assert seen == [(True, False, False), (False, True, False)]
    assert window.document.stop_points == ["head_dense"]
    oracle = open_document(window.document.source_path)
    set_stop_gradient_points(oracle, ["head_dense"])
    # compared as layer/weight: a variable's full path also holds the Keras name scopes
    # open on the thread that built it (a worker thread here, the test's thread there)
    assert [_layer_and_weight(v) for v in window.document.model.trainable_weights] == \
        [_layer_and_weight(v) for v in oracle.model.trainable_weights]
    window.editor.stack.undo()  # its graph is kept: no rebuild
    assert window.document.stop_points == [] and not window.editor_lock.active
    window.editor.stack.redo()
    assert window.document.stop_points == ["head_dense"]


@pytest.mark.slow
def test_a_stop_gradient_toggle_on_nasnet_keeps_the_event_loop_running(
        qtbot, window, keras, tmp_path, capsys):
    """Three toggles, each a fresh rebuild (another layer): the best is under the issue's
    50 ms, none is a long stall (a loaded 2-core machine delays single readings)."""
    path = tmp_path / "nasnet.keras"
    keras.applications.NASNetMobile(weights=None, input_shape=(32, 32, 3), classes=5).save(path)
    with qtbot.waitSignal(window.load_finished, timeout=NASNET_LOAD_TIMEOUT_MS):
        window.open_path(path)
    document = window.document
    readings = [_toggle_stall_ms(qtbot, window, name)
                for name in ("normal_concat_6", "normal_concat_8", "normal_concat_3")]
    with capsys.disabled():
        print(f"\n[stop-gradient toggle, NASNetMobile] longest event-loop stall per toggle: "
              f"{', '.join(f'{ms:.0f}' for ms in readings)} ms")
    assert document.stop_points == ["normal_concat_3"]
    assert min(readings) < TOGGLE_STALL_LIMIT_MS
    assert max(readings) < 3 * TOGGLE_STALL_LIMIT_MS


def _toggle_stall_ms(qtbot, window, name: str) -> float:
    """Toggles a stop-gradient point after layer `name` (the one before undone) and
    returns the longest stall from the toggle until the tree has repainted."""
    if window.document.stop_points:
        window.editor.stack.undo()  # its graph is kept: no rebuild
    window.tree.select_nodes([window.document.layer(name)])
    qtbot.wait(200)  # the tree has painted
    rebuilding, painted = [], []
    window.editor.rebuilding_changed.connect(rebuilding.append)
    meter = StallMeter()
    meter.start()
    window.toggle_stop_selected()  # returns once the rebuild ended and the edit is installed
    window.editor.rebuilding_changed.disconnect(rebuilding.append)
    assert rebuilding == [True, False] and window.document.stop_points == [name]
    viewport = window.tree.viewport()
    viewport.installEventFilter(paints := PaintCounter(painted))
    qtbot.waitUntil(lambda: bool(painted), timeout=5_000)  # the tree repainted the changed rows
    qtbot.wait(300)  # the later batches of rows, and whatever the event loop does after that
    viewport.removeEventFilter(paints)
    return meter.stop()


class PaintCounter(QObject):
    """Records the paint events of the widget it filters."""

    def __init__(self, painted: list):
        super().__init__()
        self.painted = painted

    def eventFilter(self, watched, event) -> bool:
        if event.type() == QEvent.Type.Paint:
            self.painted.append(event.rect())
        return False


def _layer_and_weight(variable) -> str:
    return "/".join(variable.path.split("/")[-2:])
