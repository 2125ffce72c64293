"""Measures how long the GUI thread's event loop could not run (GUI responsiveness tests)."""

from __future__ import annotations

import time

from PySide6.QtCore import QObject, QTimer


class StallMeter(QObject):
    """A 5 ms timer in the GUI thread; the longest gap between its ticks is the longest
    time the event loop could not run."""

    def __init__(self):
        super().__init__()
        self.timer = QTimer(self)
        self.timer.setInterval(5)
        self.timer.timeout.connect(self._tick)
        self.longest = 0.0
        self.longest_at = 0.0  # seconds after start() at which the longest stall began

    def start(self) -> None:
        self._start = self._last = time.perf_counter()
        self.timer.start()

    def _tick(self) -> None:
        now = time.perf_counter()
        if now - self._last > self.longest:
            self.longest, self.longest_at = now - self._last, self._last - self._start
        self._last = now

    def stop(self) -> float:
        self.timer.stop()
        return self.longest * 1000
