"""Python's garbage collection, confined to the GUI thread.

The cyclic collector runs in whichever thread happens to allocate when a threshold is
crossed. If that is a worker thread (loading a model, training) and the garbage holds Qt
objects that belong to the GUI thread, Qt crashes: seen here as a segfault in a loader
worker, "Garbage-collecting" in its stack. So automatic collection is switched off while
the GUI runs and a GUI-thread timer collects instead, by generation, as often as Python's
own thresholds would (cheap when there is little garbage).
"""

from __future__ import annotations

import gc

from PySide6.QtCore import QObject, QTimer, Slot


class MainThreadGarbageCollector(QObject):
    """Collects garbage only in the thread that creates it (the GUI thread).

    Args:
        interval_ms: how often the generation counts are checked.
    """

    def __init__(self, interval_ms: int = 200, parent: QObject | None = None):
        super().__init__(parent)
        self._thresholds = gc.get_threshold()
        self._was_enabled = gc.isenabled()
        gc.disable()
        self._timer = QTimer(self)
        self._timer.timeout.connect(self.check)
        self._timer.start(interval_ms)

    @Slot()
    def check(self) -> None:
        counts = gc.get_count()
        for generation in (2, 1, 0):
            if counts[generation] > self._thresholds[generation]:
                gc.collect(generation)
                return

    def stop(self) -> None:
        """Collects once more and gives collection back to Python."""
        self._timer.stop()
        gc.collect()
        if self._was_enabled:
            gc.enable()
