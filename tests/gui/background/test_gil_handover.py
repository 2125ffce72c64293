"""`quick_handover` shortens the interpreter's switch interval inside its blocks, from any
thread, and restores the interval the process had when the last overlapping block ends."""

from __future__ import annotations

import sys
import threading

import pytest

from freezestudio.gui.background.gil_handover import HANDOVER_INTERVAL_S, quick_handover


def test_overlapping_blocks_in_two_threads_restore_the_interval_after_the_last():
    before = sys.getswitchinterval()
    entered, release, seen = threading.Event(), threading.Event(), []

    def worker():
        with quick_handover():
            entered.set()
            release.wait(10)
            seen.append(sys.getswitchinterval())

    thread = threading.Thread(target=worker)
    assert before > 10 * HANDOVER_INTERVAL_S  # the interpreter's own (5 ms by default)
    with quick_handover():
        assert sys.getswitchinterval() == pytest.approx(HANDOVER_INTERVAL_S)
        thread.start()
        assert entered.wait(10)
    # the worker's block is still open
    assert sys.getswitchinterval() == pytest.approx(HANDOVER_INTERVAL_S)
    release.set()
    thread.join(10)
    assert seen == [pytest.approx(HANDOVER_INTERVAL_S)]
    assert sys.getswitchinterval() == before


def test_an_error_inside_the_block_restores_the_interval():
    before = sys.getswitchinterval()
    try:
        with quick_handover():
            raise KeyError("inside")
    except KeyError:
        pass
    assert sys.getswitchinterval() == before
