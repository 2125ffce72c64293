"""Keeping the GUI thread's waits for the GIL short while a background thread runs
TensorFlow or Keras Python code (a run's tracing, a stop-gradient graph rebuild).

While TensorFlow traces or Keras builds a graph, its C API releases and at once re-takes
the GIL around very many short calls. A waiting thread asks the holder to hand over only
once a whole switch interval (5 ms by default) passes without any hand-over, which these
releases keep resetting, and it rarely wins the race to the lock: measured with a 5 ms
timer in the GUI thread (2 shared cores), the GUI thread waited up to 100-230 ms at a
time while MobileNetV2's step was traced, and 190-340 ms while NASNetMobile's graph was
rebuilt for a stop-gradient point. With a 5 µs interval it waits a few milliseconds, at
no measurable cost in tracing time or steps/s (a thread alone never switches).

`quick_handover()` sets that interval for the duration of a block, from any thread;
blocks may overlap (the interval is restored when the last one ends).
"""

from __future__ import annotations

import contextlib
import sys
import threading

HANDOVER_INTERVAL_S = 5e-6

_lock = threading.Lock()
_users = 0
_saved_interval = 0.0


@contextlib.contextmanager
def quick_handover():
    """The interpreter hands the GIL over after `HANDOVER_INTERVAL_S` inside the block."""
    global _users, _saved_interval
    with _lock:
        if _users == 0:
            _saved_interval = sys.getswitchinterval()
            sys.setswitchinterval(HANDOVER_INTERVAL_S)
        _users += 1
    try:
        yield
    finally:
        with _lock:
            _users -= 1
            if _users == 0:
                sys.setswitchinterval(_saved_interval)
