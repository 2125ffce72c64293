"""Telling a view about changed rows a batch at a time, one batch per paint.

A view repaints the rows a `dataChanged` names at its next paint, and a row whose cells
were dropped is computed afresh there. Painting a row of the layer tree costs ~1 ms on
the GUI thread (a 31-row viewport of NASNetMobile: 27 ms with every cell cached, 32 ms
with none), so an edit that changes every shown row of a large model (a stop-gradient
point cutting the gradient off most of NASNetMobile) kept the event loop from running
for one long paint. Paced by the view's viewport (`pace_by`), a `RowNotifier` names at
most `ROWS_PER_PAINT` rows, waits for the paint of those, then names the next ones: the
view catches up over a few short paints. Without a view it names every row at once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from PySide6.QtCore import QEvent, QObject, QTimer
from PySide6.QtWidgets import QWidget

ROWS_PER_PAINT = 12
PAINT_WAIT_MS = 100  # a batch whose rows are not shown gets no paint: go on anyway


class RowNotifier(QObject):
    """Calls `notify(parent, first, last)` for runs of rows, a batch per paint.

    Args:
        notify: emits the model's dataChanged for rows first..last of `parent` (a node,
            or None for the top level).
        parent: the QObject this belongs to (the model).
    """

    def __init__(self, notify: Callable[[object, int, int], None], parent: QObject):
        super().__init__(parent)
        self._notify = notify
        self._pending: list[tuple[object, int, int]] = []
        self._viewport: QWidget | None = None
        self._waiting = False
        self._fallback = QTimer(self)
        self._fallback.setSingleShot(True)
        self._fallback.timeout.connect(self._next_batch)

    def pace_by(self, viewport: QWidget) -> None:
        """Names one batch per paint of `viewport` (the view's) from now on."""
        self._viewport = viewport
        viewport.installEventFilter(self)

    def add(self, runs: Iterable[tuple[object, int, int]]) -> None:
        """Queues (parent, first, last) runs after those not named yet. Without a view
        they are named at once; with one, the first batch on the event loop's next turn
        (the edit's own work and the paint of its rows are then two short stalls)."""
        self._pending.extend(runs)
        if self._waiting:
            return
        if self._paced():
            self._waiting = True
            self._fallback.start(0)
        else:
            self._next_batch()

    def clear(self) -> None:
        """Forgets the runs not named yet (the model was reset)."""
        self._pending.clear()
        self._waiting = False
        self._fallback.stop()

    def _next_batch(self) -> None:
        self._fallback.stop()
        self._waiting = False
        budget = ROWS_PER_PAINT if self._paced() else None
        while self._pending and (budget is None or budget > 0):
            parent, first, last = self._pending.pop(0)
            if budget is not None and last - first + 1 > budget:
                self._pending.insert(0, (parent, first + budget, last))
                last = first + budget - 1
            if budget is not None:
                budget -= last - first + 1
            self._notify(parent, first, last)
        if self._pending:
            self._waiting = True
            self._fallback.start(PAINT_WAIT_MS)

    def _paced(self) -> bool:
        return self._viewport is not None and self._viewport.isVisible()

    def eventFilter(self, watched, event) -> bool:
        if self._waiting and event.type() == QEvent.Type.Paint:
            self._waiting = False
            QTimer.singleShot(0, self, self._next_batch)  # after this paint has run
        return False
