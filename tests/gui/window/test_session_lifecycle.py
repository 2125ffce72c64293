"""Long GUI sessions and closing the window while work runs in the background.

Twenty real training runs in one window (train, undo, train again) keep the memory bounded
and leave no thread behind; closing the window during a run, an export or a load exits
within a few seconds with every worker thread stopped. The numbers are printed
(pytest -s shows them).
"""

from __future__ import annotations

import gc
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from gui_training import CNN, RUN_TIMEOUT_MS, open_session, run

from freezestudio.gui.export.feature import install_export
from freezestudio.gui.training import support as training_support
from freezestudio.resources import DEMO_DIR

RUNS = 20
WARM_UP_RUNS = 4  # TensorFlow's first traces, caches and pools fill these
GROWTH_PER_RUN_LIMIT_MB = 15.0  # generous: measured growth is reported
CLOSE_LIMIT_S = 5.0
EXPORT_CLOSE_LIMIT_S = 10.0  # an export stage (tracing, writing a SavedModel) runs to its end


def _status(field: str) -> int:
    """A number of /proc/self/status (VmRSS in kB, Threads)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise KeyError(field)


def _python_threads() -> list[str]:
    return sorted(t.name for t in threading.enumerate())


@pytest.fixture
def session(qtbot, window, open_and_wait):
    yield from open_session(qtbot, window, open_and_wait)


@pytest.fixture
def small_data(tmp_path):
    path = tmp_path / "small.npz"
    with np.load(DEMO_DIR / "cnn_task_b.npz") as npz:
        np.savez(path, x=npz["x"][:96], y=npz["y"][:96], x_val=npz["x_val"][:32],
                 y_val=npz["y_val"][:32])
    return path


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc (Linux)")
def test_twenty_runs_keep_memory_bounded_and_leave_no_threads(qtbot, window, session,
                                                              small_data):
    with qtbot.waitSignal(session.preview_shown, timeout=RUN_TIMEOUT_MS):
        session.panel.data_box.add_source(str(small_data))
    stack = window.editor.stack
    rss, os_threads, py_threads = [], [], []
    for number in range(RUNS):
        outcome = run(qtbot, session, epochs=1, batch_size=32, cache="off", seed=number)
        assert outcome.result.status == "completed", outcome
        assert stack.undoText().startswith("Training run")
        stack.undo()  # the run's weights go back; the next run trains again from there
        gc.collect()
        rss.append(_status("VmRSS") / 1024)
        os_threads.append(_status("Threads"))
        py_threads.append(_python_threads())
    growth = (rss[-1] - rss[WARM_UP_RUNS - 1]) / (RUNS - WARM_UP_RUNS)
    print(f"\n{RUNS} runs: RSS {rss[0]:.0f} -> {rss[WARM_UP_RUNS - 1]:.0f} -> {rss[-1]:.0f} MB,"
          f" {growth:.2f} MB per run after {WARM_UP_RUNS}; OS threads {os_threads[0]} -> "
          f"{os_threads[-1]}; Python threads {len(py_threads[-1])}")
    assert growth < GROWTH_PER_RUN_LIMIT_MB, rss
    assert py_threads[-1] == py_threads[WARM_UP_RUNS - 1], "a Python thread per run"
    assert os_threads[-1] <= os_threads[WARM_UP_RUNS - 1] + 4, os_threads
    assert session.runner.thread.isRunning()  # one long-lived training thread, reused


def _closes_quickly(qtbot, window, hosts) -> float:
    start = time.perf_counter()
    assert window.close()
    seconds = time.perf_counter() - start
    for host in hosts:
        assert host.thread.isFinished(), host.thread.objectName()
    assert not window.isVisible()
    return seconds


def test_closing_during_a_run_exits_within_seconds(qtbot, window, session, monkeypatch):
    monkeypatch.setattr(training_support, "ask_stop_training", lambda parent: True)
    session.panel.form.epochs.setValue(50)
    session.panel.form.cache.setCurrentText("off")
    before = _python_threads()
    assert session.start()
    qtbot.waitUntil(lambda: session.panel.last_step is not None, timeout=RUN_TIMEOUT_MS)
    seconds = _closes_quickly(qtbot, window, [window.runner, window.reader, session.runner])
    print(f"\nclosed during a run in {seconds:.2f} s")
    assert seconds < CLOSE_LIMIT_S
    assert session.run_task.result.result.status == "cancelled"
    assert _python_threads() == before


def test_closing_during_an_export_exits_within_seconds(qtbot, window, open_and_wait,
                                                       tmp_path):
    feature = install_export(window)
    window.export = feature
    assert open_and_wait(qtbot, window, CNN)
    dialog = feature.open_dialog(modal=False)
    dialog.set_format("savedmodel")
    folder = tmp_path / "exports"
    folder.mkdir()
    dialog.destination.setText(str(folder / "cnn_saved"))
    assert dialog.start()
    qtbot.waitUntil(lambda: feature.runner.is_busy(), timeout=5000)
    qtbot.wait(300)  # inside the export's first stages
    seconds = _closes_quickly(qtbot, window, [window.runner, window.reader, feature.runner])
    print(f"\nclosed during an export in {seconds:.2f} s")
    assert seconds < EXPORT_CLOSE_LIMIT_S
    leftovers = [p.name for p in folder.iterdir() if p.name != "cnn_saved"]
    assert leftovers == [], "an abandoned export leaves no staging folder"


def test_closing_during_a_load_exits_within_seconds(qtbot, window):
    qtbot.waitUntil(lambda: not window.runner.is_busy(), timeout=RUN_TIMEOUT_MS)  # TF import
    window.open_path(CNN)
    assert window.runner.is_busy()
    seconds = _closes_quickly(qtbot, window, [window.runner, window.reader])
    print(f"\nclosed during a load in {seconds:.2f} s")
    assert seconds < CLOSE_LIMIT_S
