"""Background work: one QObject worker on one QThread runs jobs in order.

A job is a plain function of the `Job` itself (so it can poll `job.cancelled`); it never
touches widgets. The worker reports through a queued signal to `JobRunner`, a main-thread
QObject, whose slot calls the job's callbacks in the GUI thread (docs/architecture.md: never connect
a worker signal to a lambda, it would run in the worker thread).

Jobs run one after the other, so the TensorFlow import queued at start-up always
finishes before a model load starts (two threads importing TensorFlow at once can
deadlock on the import locks).

Trap (measured with PySide6 6.12 / TF 2.21): with a plain QThread, each queued slot call
runs under a fresh Python thread state (PySide's PyGILState_Ensure/Release around the
call), so TensorFlow's per-thread eager context, created by the import job, is gone by the
next job and loading a model segfaults. `_PythonThread.run` is Python code that calls
`exec()`, so every slot runs nested inside one long-lived thread state.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable

from PySide6.QtCore import QObject, QThread, Signal, Slot


class Job:
    """One unit of background work and its outcome.

    Attributes:
        label: what it does, for status lines.
        cancelled: set by the GUI; the job may poll it, and a cancelled job's result is
            dropped (its callbacks are not called).
        result / error / details: outcome (details: the traceback of an unexpected error).
        seconds: how long `fn` ran.
    """

    def __init__(self, fn: Callable, label: str, on_done: Callable | None,
                 on_error: Callable | None):
        self.fn = fn
        self.label = label
        self.on_done = on_done
        self.on_error = on_error
        self.cancelled = False
        self.result = None
        self.error: BaseException | None = None
        self.details = ""
        self.seconds = 0.0
        self.finished = False

    def cancel(self) -> None:
        self.cancelled = True


class _PythonThread(QThread):
    """A QThread whose event loop runs inside a Python frame (see the module docstring)."""

    def run(self) -> None:
        self.exec()


class _Worker(QObject):
    """Lives in the background thread; runs each job it is sent."""

    done = Signal(object)

    @Slot(object)
    def run(self, job: Job) -> None:
        if not job.cancelled:
            start = time.perf_counter()
            try:
                job.result = job.fn(job)
            except Exception as exc:  # noqa: BLE001 - reported to the GUI, which decides
                job.error = exc
                job.details = traceback.format_exc()
            job.seconds = time.perf_counter() - start
        self.done.emit(job)


class JobRunner(QObject):
    """Runs jobs on a background QThread and calls their callbacks on the GUI thread.

    Signals:
        busy_changed(bool): whether jobs are queued or running.
    """

    busy_changed = Signal(bool)
    _submit = Signal(object)

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self._pending: list[Job] = []
        self._thread = _PythonThread()
        self._thread.setObjectName("freezestudio-worker")
        self._worker = _Worker()
        self._worker.moveToThread(self._thread)
        self._submit.connect(self._worker.run)
        self._worker.done.connect(self._on_done)
        self._thread.finished.connect(self._worker.deleteLater)
        self._thread.start()

    @property
    def thread(self) -> QThread:
        return self._thread

    def submit(self, fn: Callable, label: str = "", on_done: Callable | None = None,
               on_error: Callable | None = None) -> Job:
        """Queues `fn(job)`; `on_done(result)` or `on_error(job)` run later on the GUI thread."""
        job = Job(fn, label, on_done, on_error)
        self._pending.append(job)
        if len(self._pending) == 1:
            self.busy_changed.emit(True)
        self._submit.emit(job)
        return job

    def is_busy(self) -> bool:
        return bool(self._pending)

    @Slot(object)
    def _on_done(self, job: Job) -> None:
        job.finished = True
        if job in self._pending:
            self._pending.remove(job)
        if not self._pending:
            self.busy_changed.emit(False)
        if job.cancelled:
            return
        if job.error is not None:
            if job.on_error is not None:
                job.on_error(job)
        elif job.on_done is not None:
            job.on_done(job.result)

    def shutdown(self, timeout_ms: int = 60_000) -> bool:
        """Cancels queued jobs, lets a running one finish, stops the thread.

        Returns:
            True if the thread stopped within the timeout.
        """
        for job in self._pending:
            job.cancel()
        self._thread.quit()
        return self._thread.wait(timeout_ms)


def import_tensorflow_job(job: Job) -> float:
    """Imports TensorFlow and Keras (quietly); returns the seconds it took."""
    from freezestudio.core.tf_import import import_tensorflow_quietly

    start = time.perf_counter()
    import_tensorflow_quietly()
    return time.perf_counter() - start
