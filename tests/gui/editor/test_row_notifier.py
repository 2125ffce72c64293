"""Changed rows reach the layer tree a batch per paint: every paint after an edit that
changes many rows covers at most `ROWS_PER_PAINT` rows, and every changed row is
repainted in the end (checked by the cells the view asks for)."""

from __future__ import annotations

from PySide6.QtCore import QEvent, QObject
from PySide6.QtWidgets import QWidget

from freezestudio.gui.editor.row_notifier import ROWS_PER_PAINT, RowNotifier

LAYERS = 80


def test_without_a_view_every_run_is_named_at_once(qapp):
    named, owner = [], QObject()
    notifier = RowNotifier(lambda *run: named.append(run), owner)
    notifier.add([("a", 0, 40), ("b", 3, 3)])
    assert named == [("a", 0, 40), ("b", 3, 3)]


def test_a_hidden_view_does_not_pace(qapp):
    named, viewport = [], QWidget()
    notifier = RowNotifier(lambda *run: named.append(run), viewport)
    notifier.pace_by(viewport)  # never shown: no paint would ever come
    notifier.add([(None, 0, 40)])
    assert named == [(None, 0, 40)]


def test_a_shown_view_gets_one_batch_per_paint(qtbot):
    viewport = QWidget()
    qtbot.addWidget(viewport)
    viewport.show()
    qtbot.waitExposed(viewport)
    events = []
    viewport.installEventFilter(log := _PaintLog(events))

    def notify(*run):
        events.append(run)
        viewport.update()  # what a view does for changed rows

    notifier = RowNotifier(notify, viewport)
    notifier.pace_by(viewport)
    notifier.add([("a", 0, 29), ("b", 0, 4)])
    assert events == []  # the first batch on the event loop's next turn
    qtbot.waitUntil(lambda: events.count("paint") >= 3, timeout=5_000)
    viewport.removeEventFilter(log)
    batches = _batches(events)
    assert [run for batch in batches for run in batch] == \
        [("a", 0, 11), ("a", 12, 23), ("a", 24, 29), ("b", 0, 4)]
    assert all(sum(last - first + 1 for _p, first, last in batch) <= ROWS_PER_PAINT
               for batch in batches)
    assert len(batches) == 3


def test_a_cleared_notifier_names_nothing_more(qtbot):
    viewport = QWidget()
    qtbot.addWidget(viewport)
    viewport.show()
    named = []
    notifier = RowNotifier(lambda *run: named.append(run), viewport)
    notifier.pace_by(viewport)
    notifier.add([(None, 0, 100)])
    notifier.clear()
    qtbot.wait(250)  # past the wait for a paint that does not come
    assert named == []


def test_freezing_a_deep_model_repaints_its_rows_a_few_at_a_time(
        qtbot, window, keras, tmp_path, open_and_wait):
    model = keras.Sequential([keras.Input((4,))] +
                             [keras.layers.Dense(4, name=f"d{i}") for i in range(LAYERS)])
    model.save(tmp_path / "deep.keras")
    assert open_and_wait(qtbot, window, tmp_path / "deep.keras")
    viewport = window.tree.viewport()
    row_height = window.tree.rowHeight(window.model.index(0, 0))
    shown = viewport.height() // row_height
    assert shown > 2 * ROWS_PER_PAINT, "the window shows too few rows for this test"
    qtbot.wait(200)  # painted
    heights = []
    viewport.installEventFilter(log := _PaintLog(heights, _painted_height))
    window.editor.set_trainable([window.document.root], False)
    qtbot.waitUntil(lambda: sum(heights) >= (shown - 1) * row_height, timeout=5_000)
    qtbot.wait(200)
    viewport.removeEventFilter(log)
    assert len(heights) >= 2
    # a paint of one batch: its rows, and at most the rows of the top level's totals
    assert max(heights) <= (ROWS_PER_PAINT + 1) * row_height, heights


def _painted_height(event) -> int:
    """The height of what a paint covers (its region can be several separate rows)."""
    return sum(rect.height() for rect in event.region())


class _PaintLog(QObject):
    def __init__(self, events: list, record=lambda event: "paint"):
        super().__init__()
        self.events, self.record = events, record

    def eventFilter(self, watched, event) -> bool:
        if event.type() == QEvent.Type.Paint:
            self.events.append(self.record(event))
        return False


def _batches(events: list) -> list[list]:
    """The runs named between two paints."""
    batches, current = [], []
    for event in events:
        if event == "paint":
            if current:
                batches.append(current)
            current = []
        else:
            current.append(event)
    return batches + ([current] if current else [])
