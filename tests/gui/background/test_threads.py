"""The task host on a real QThread: results, errors, progress and partial results reach the
GUI thread, in order; cancel, abandon and shutdown."""

from __future__ import annotations

import threading
import time

import pytest

from freezestudio.gui.background.threads import TaskHost

WAIT_MS = 10_000


@pytest.fixture
def host(qapp):
    """A host of its own; shut down (and its thread checked) at teardown."""
    runner = TaskHost("test-host")
    yield runner
    assert runner.shutdown(10)
    assert runner.thread.isFinished()


class Record:
    """Handlers that note what they got and on which thread."""

    def __init__(self):
        self.calls, self.threads = [], set()

    def __call__(self, name):
        def handler(*args):
            self.calls.append((name, *args))
            self.threads.add(threading.get_ident())
        return handler

    def names(self) -> list:
        return [call[0] for call in self.calls]


def test_a_result_arrives_on_the_gui_thread_and_the_task_runs_on_the_host_thread(qtbot, host):
    record, ran_on = Record(), []

    def task(state):
        ran_on.append(threading.get_ident())
        return 42

    state = host.submit(task, on_done=record("done"))
    assert host.is_busy()
    qtbot.waitUntil(lambda: bool(record.calls), timeout=WAIT_MS)
    assert record.calls == [("done", 42)]
    assert record.threads == {threading.get_ident()}
    assert ran_on and ran_on[0] != threading.get_ident()
    assert state.wait(0) and state.result == 42 and state.error is None
    assert not host.is_busy()


def test_an_error_arrives_as_an_error_with_its_traceback(qtbot, host):
    record = Record()

    def failing_step():
        raise ValueError("the data are bad")

    def task(state):
        failing_step()

    host.submit(task, on_done=record("done"), on_error=record("error"))
    qtbot.waitUntil(lambda: bool(record.calls), timeout=WAIT_MS)
    [(name, state)] = record.calls
    assert name == "error" and record.threads == {threading.get_ident()}
    assert isinstance(state.error, ValueError) and str(state.error) == "the data are bad"
    assert state.details.startswith("Traceback") and "failing_step" in state.details


def test_an_error_without_a_handler_is_raised_on_the_gui_thread(qtbot, host):
    def task(state):
        raise KeyError("no handler")

    with qtbot.captureExceptions() as exceptions:
        state = host.submit(task)
        qtbot.waitUntil(lambda: not host.is_busy(), timeout=WAIT_MS)
    assert [value for _, value, _ in exceptions] == [state.error]


def test_progress_and_partial_results_arrive_in_order_before_the_result(qtbot, host):
    record = Record()

    def task(state):
        for step in range(3):
            state.progress((step + 1) / 3, f"step {step + 1}")
            state.send(step)
        return "done"

    host.submit(task, on_done=record("done"), on_partial=record("partial"),
                on_progress=record("progress"))
    qtbot.waitUntil(lambda: "done" in record.names(), timeout=WAIT_MS)
    assert record.calls == [("progress", 1 / 3, "step 1"), ("partial", 0),
                            ("progress", 2 / 3, "step 2"), ("partial", 1),
                            ("progress", 1.0, "step 3"), ("partial", 2), ("done", "done")]
    assert record.threads == {threading.get_ident()}


def test_tasks_run_in_submission_order(qtbot, host):
    record, started = Record(), []

    def task(number, state):
        started.append(number)
        time.sleep(0.02 * (3 - number))  # the first one is the slowest
        return number

    for number in range(4):
        host.submit(lambda state, n=number: task(n, state), on_done=record("done"))
    qtbot.waitUntil(lambda: len(record.calls) == 4, timeout=WAIT_MS)
    assert started == [0, 1, 2, 3]
    assert record.calls == [("done", 0), ("done", 1), ("done", 2), ("done", 3)]


def test_tasks_share_one_python_thread_state(qtbot, host):
    """What TensorFlow's per-thread eager context needs: a thread-local set by one task
    is still there for the next (a fresh thread state per slot call would lose it)."""
    local, record = threading.local(), Record()

    def first(state):
        local.value = "kept"

    host.submit(first)
    host.submit(lambda state: getattr(local, "value", None), on_done=record("done"))
    qtbot.waitUntil(lambda: bool(record.calls), timeout=WAIT_MS)
    assert record.calls == [("done", "kept")]


def test_cancel_stops_a_task_that_polls_and_its_outcome_is_still_reported(qtbot, host):
    record, running, woken = Record(), threading.Event(), []

    def task(state):
        state.add_cancel_callback(lambda: woken.append(True))
        running.set()
        while not state.cancelled:
            time.sleep(0.005)
        return "stopped"

    state = host.submit(task, on_done=record("done"))
    assert running.wait(WAIT_MS / 1000)
    state.cancel()
    qtbot.waitUntil(lambda: bool(record.calls), timeout=WAIT_MS)
    assert record.calls == [("done", "stopped")] and woken == [True]
    late = []
    state.add_cancel_callback(lambda: late.append(True))  # already cancelled: at once
    assert late == [True]


def test_an_abandoned_task_is_not_run_and_reports_nothing(qtbot, host):
    record, release, ran = Record(), threading.Event(), []
    blocker = host.submit(lambda state: release.wait(WAIT_MS / 1000), on_done=record("blocker"))
    queued = host.submit(lambda state: ran.append(True), on_done=record("queued"))
    queued.abandon()
    assert queued.cancelled
    release.set()
    host.submit(lambda state: "after", on_done=record("after"))
    qtbot.waitUntil(lambda: "after" in record.names(), timeout=WAIT_MS)
    assert record.names() == ["blocker", "after"] and ran == []
    assert blocker.result is True


def test_shutdown_with_a_task_still_running_returns_within_its_timeout(qtbot, qapp):
    host, record, release, running = TaskHost("test-stuck"), Record(), threading.Event(), \
        threading.Event()

    def stuck(state):  # never polls `cancelled`
        running.set()
        release.wait(WAIT_MS / 1000)
        return "late"

    state = host.submit(stuck, on_done=record("done"))
    queued = host.submit(lambda state: "never", on_done=record("queued"))
    assert running.wait(WAIT_MS / 1000)
    start = time.perf_counter()
    assert host.shutdown(0.2) is False
    assert time.perf_counter() - start < 2.0
    assert state.cancelled and queued.cancelled and not host.thread.isFinished()
    release.set()
    assert host.shutdown(10) and host.thread.isFinished()
    qtbot.wait(50)
    assert record.calls == [] and state.result == "late" and queued.result is None
    assert host.submit(lambda state: "refused").abandoned  # nothing runs any more
