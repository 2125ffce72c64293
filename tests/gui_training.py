"""GUI training helpers shared by the GUI tests: the demo CNN open with its training session,
and one run started from the panel's form (real runs on the worker thread)."""

from __future__ import annotations

from freezestudio.gui.training.session import install_training
from freezestudio.resources import DEMO_DIR

CNN = DEMO_DIR / "cnn_transfer.keras"
RUN_TIMEOUT_MS = 120_000


def open_session(qtbot, window, open_and_wait):
    """Generator for a fixture: the window with the demo CNN open, its training session and
    a preview of the demo data; checks at teardown that the training thread stopped."""
    training = getattr(window, "training", None) or install_training(window)
    window.training = training
    assert training.panel is None  # created when first shown (pyqtgraph: not at start-up)
    training.dock.show()
    assert training.panel is not None and not training.panel.isEnabled()
    with qtbot.waitSignal(training.preview_shown, timeout=RUN_TIMEOUT_MS):
        assert open_and_wait(qtbot, window, CNN)
    assert training.preview.error == "" and training.panel.start_button.isEnabled()
    yield training
    window.close()
    assert training.runner.thread.isFinished(), "the training QThread is still running"


def run(qtbot, session, **settings) -> object:
    """Starts a run with these form settings and waits for its outcome."""
    form = session.panel.form
    form.epochs.setValue(settings.get("epochs", 1))
    form.batch_size.setValue(settings.get("batch_size", 32))
    form.cache.setCurrentText(settings.get("cache", "auto"))
    form.seed.setValue(settings.get("seed", 1))
    with qtbot.waitSignal(session.run_done, timeout=RUN_TIMEOUT_MS) as blocker:
        assert session.start()
    # the last plots are drawn one per timer tick after the run, then the timer stops
    plots = session.panel.plots
    qtbot.waitUntil(lambda: not plots.pending() and not plots._timer.isActive(), timeout=5000)
    return blocker.args[0]
