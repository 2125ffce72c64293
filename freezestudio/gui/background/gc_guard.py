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
import time

from PySide6.QtCore import QObject, QTimer, Slot

FULL_COLLECTION_EVERY_S = 30.0


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
        self._last_full = time.monotonic()
        self._timer = QTimer(self)
        self._timer.timeout.connect(self.check)
        self._timer.start(interval_ms)

    @Slot()
    def check(self) -> None:
        counts = gc.get_count()
        now = time.monotonic()
        if counts[2] > self._thresholds[2] and now - self._last_full >= FULL_COLLECTION_EVERY_S:
            # Python itself defers full collections on a large heap (TensorFlow's is); a full
            # pass can block the window for ~200 ms, so it runs at most this often.
            self._last_full = now
            gc.collect(2)
        elif counts[1] > self._thresholds[1]:
            gc.collect(1)
        elif counts[0] > self._thresholds[0]:
            gc.collect(0)

    def stop(self) -> None:
        """Collects once more and gives collection back to Python."""
        self._timer.stop()
        gc.collect()
        if self._was_enabled:
            gc.enable()
