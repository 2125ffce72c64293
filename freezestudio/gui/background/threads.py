"""Background work: one host runs plain task functions on its own QThread, in order.

The pattern of Orange3's `TaskState`/`ConcurrentMixin`: a task is a plain Python function
that receives a `TaskState`, never touches a widget, and returns its result. Through the
state it reports `progress(fraction, message)`, sends partial results (`send(item)`:
a training run's step reports) and polls `cancelled`. A `TaskHost` owns the thread's
lifecycle (start, cancel, shutdown with a timeout) and calls the handlers the feature
gave at `submit` (`on_done`, `on_error`, `on_partial`, `on_progress`) on the GUI thread.
A feature keeps only its task functions and its handlers.

Cancelling is one idiom, a `threading.Event` per task:
- `TaskState.cancel()` asks the task to stop; a task polls `state.cancelled`, or passes
  the flag on (`add_cancel_callback(control.cancel)` wakes the core's `TrainingControl`,
  `cancelled=lambda: state.cancelled` is the export pipeline's). Its outcome still
  reaches its handlers: a task reports how it stopped (a stopped run's trained weights,
  an export that wrote nothing);
- `TaskState.abandon()` cancels and drops the outcome: no handler is called any more,
  and the task does not run if it has not started (a load the user gave up, a preview
  a newer one replaced);
- `TaskHost.shutdown()` abandons every task, stops the thread and waits for it.

Traps this module handles (seen with PySide6 6.12 and TensorFlow 2.21):
- with a plain QThread, each queued slot call runs under a fresh Python thread state
  (PySide's PyGILState_Ensure/Release around the call), so TensorFlow's per-thread eager
  context, created by one task, is gone by the next and loading a model segfaults.
  `_LoopThread.run` is Python code that calls `exec()`, so every task runs nested inside
  one long-lived Python thread state;
- a signal emitted in the worker thread and connected to a lambda runs the lambda in the
  worker thread. The host's signals connect only to `@Slot` methods of the host, a
  main-thread QObject, so Qt queues each call into the GUI thread; the feature's
  handlers are plain callables that the host calls from those slots;
- the state is a plain Python object that emits through its host's queued signals: a
  QObject per task could be freed last by the worker thread, which holds it while it
  runs, and a QObject must be destroyed in its own thread.

One host runs its tasks one after the other, so the TensorFlow import queued at start-up
finishes before a model load starts (two threads importing TensorFlow at once can
deadlock on the import locks). Each feature has its own host (the window: import, open,
save; training: previews and runs; export): a run or an export can take minutes and must not
wait behind, nor hold up, opening and saving. They never import TensorFlow concurrently:
training and export only start on a loaded document, so after the window's host has
imported it.
"""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Callable

from PySide6.QtCore import QObject, QThread, Signal, Slot

SHUTDOWN_TIMEOUT_S = 60.0


class TaskState:
    """One task: what its function sees while it runs, and the GUI's handle on it.

    The function calls `progress`, `send` and reads `cancelled` (any thread may); the GUI
    thread calls `cancel` or `abandon`, and may block in `wait`.

    Attributes:
        result: what the function returned (set on the worker thread when it ends).
        error: the exception it raised, if any; `details` is its traceback.
        abandoned: its outcome is no longer wanted (`abandon`, `TaskHost.shutdown`).
    """

    def __init__(self, host: TaskHost, fn: Callable, on_done: Callable | None,
                 on_error: Callable | None, on_partial: Callable | None,
                 on_progress: Callable | None):
        self._host = host
        self._fn = fn
        self._on_done, self._on_error = on_done, on_error
        self._on_partial, self._on_progress = on_partial, on_progress
        self._cancel = threading.Event()
        self._ended = threading.Event()
        self._lock = threading.Lock()
        self._cancel_callbacks: list[Callable] = []
        self.abandoned = False
        self.result = None
        self.error: Exception | None = None
        self.details = ""

    # --- the task's side ----------------------------------------------------------------
    @property
    def cancelled(self) -> bool:
        """Whether the task was asked to stop."""
        return self._cancel.is_set()

    def progress(self, fraction: float, message: str = "") -> None:
        """Reports how far the task is; `on_progress(fraction, message)` gets it.

        Args:
            fraction: between 0 and 1.
            message: what is happening.
        """
        self._host._progressed.emit(self, float(fraction), message)

    def send(self, item) -> None:
        """Sends a partial result (or an event) to `on_partial(item)`, in order."""
        self._host._partial.emit(self, item)

    def add_cancel_callback(self, callback: Callable[[], None]) -> None:
        """Calls `callback()` when the task is cancelled, at once if it already is.

        It runs on the thread that cancels (usually the GUI thread), so it must be
        thread-safe and quick, e.g. `TrainingControl.cancel`.
        """
        with self._lock:
            if not self._cancel.is_set():
                self._cancel_callbacks.append(callback)
                return
        callback()

    # --- the GUI's side -------------------------------------------------------------------
    def cancel(self) -> None:
        """Asks the task to stop; its outcome still reaches its handlers."""
        with self._lock:
            self._cancel.set()
            callbacks, self._cancel_callbacks = self._cancel_callbacks, []
        for callback in callbacks:
            callback()

    def abandon(self) -> None:
        """Cancels the task and drops its outcome (no handler is called any more)."""
        self.abandoned = True
        self.cancel()

    def wait(self, timeout_s: float | None = None) -> bool:
        """Blocks until the function has ended (its handlers may not have run yet).

        Returns:
            True if it ended within the timeout (`result`/`error` are then set).
        """
        return self._ended.wait(timeout_s)

    def _run(self) -> None:
        try:
            self.result = self._fn(self)
        except Exception as exc:  # noqa: BLE001 - handed to on_error on the GUI thread
            self.error = exc
            self.details = traceback.format_exc()
        finally:
            self._fn = None  # with what it was bound to (a run's document): kept tasks keep
            self._ended.set()  # only their result


class _LoopThread(QThread):
    """A QThread whose event loop runs inside a Python frame (see the module docstring)."""

    def run(self) -> None:
        self.exec()


class _Worker(QObject):
    """Lives in the host's thread; runs each task it is sent, unless it was abandoned."""

    ended = Signal(object)

    @Slot(object)
    def run(self, state: TaskState) -> None:
        if not state.abandoned:
            state._run()
        self.ended.emit(state)


class TaskHost(QObject):
    """Runs tasks on one background QThread, in submission order, and calls their
    handlers on the GUI thread (create it on the GUI thread).

    Args:
        name: the thread's name (for debuggers and crash reports).
        parent: the owning QObject.

    Attributes:
        thread: the QThread (finished once `shutdown` has stopped it).
    """

    _queue = Signal(object)
    _progressed = Signal(object, float, str)
    _partial = Signal(object, object)

    def __init__(self, name: str, parent: QObject | None = None):
        super().__init__(parent)
        self._pending: list[TaskState] = []
        self._shut = False
        self.thread = _LoopThread()
        self.thread.setObjectName(name)
        self._worker = _Worker()
        self._worker.moveToThread(self.thread)
        self._queue.connect(self._worker.run)
        self._worker.ended.connect(self._on_ended)
        self._progressed.connect(self._on_progress)
        self._partial.connect(self._on_partial)
        self.thread.finished.connect(self._worker.deleteLater)
        self.thread.start()

    def submit(self, fn: Callable[[TaskState], object], on_done: Callable | None = None,
               on_error: Callable | None = None, on_partial: Callable | None = None,
               on_progress: Callable | None = None) -> TaskState:
        """Queues `fn(state)` after the tasks already submitted.

        Args:
            fn: the task; it runs on the host's thread and must not touch widgets.
            on_done: `on_done(result)` when `fn` returned.
            on_error: `on_error(state)` when `fn` raised (`state.error`, `state.details`);
                without it the error is raised on the GUI thread (`sys.excepthook`).
            on_partial: `on_partial(item)` for each `state.send(item)`.
            on_progress: `on_progress(fraction, message)` for each `state.progress`.

        Returns:
            The task's state (to cancel it or wait for it). After `shutdown` it is
            returned abandoned and never runs.
        """
        state = TaskState(self, fn, on_done, on_error, on_partial, on_progress)
        if self._shut:
            state.abandon()
            return state
        self._pending.append(state)
        self._queue.emit(state)
        return state

    def is_busy(self) -> bool:
        """Whether tasks are queued or running (or their outcome is not handled yet)."""
        return bool(self._pending)

    def shutdown(self, timeout_s: float = SHUTDOWN_TIMEOUT_S) -> bool:
        """Abandons every task, stops the thread and waits for it (a running task
        stops when it next polls `cancelled`, or when it ends). No handler is called
        afterwards; calling it again only waits.

        Returns:
            True if the thread stopped within the timeout.
        """
        if not self._shut:
            self._shut = True
            for state in self._pending:
                state.abandon()
            self.thread.quit()
        return self.thread.wait(max(0, int(timeout_s * 1000)))

    def _wanted(self, state: TaskState) -> bool:
        return not self._shut and not state.abandoned

    @Slot(object, float, str)
    def _on_progress(self, state: TaskState, fraction: float, message: str) -> None:
        if self._wanted(state) and state._on_progress is not None:
            state._on_progress(fraction, message)

    @Slot(object, object)
    def _on_partial(self, state: TaskState, item) -> None:
        if self._wanted(state) and state._on_partial is not None:
            state._on_partial(item)

    @Slot(object)
    def _on_ended(self, state: TaskState) -> None:
        if state in self._pending:
            self._pending.remove(state)
        if not self._wanted(state):
            return
        if state.error is None:
            if state._on_done is not None:
                state._on_done(state.result)
        elif state._on_error is not None:
            state._on_error(state)
        else:
            raise state.error


def import_tensorflow_task(state: TaskState, gate=None) -> float:
    """Imports TensorFlow and Keras (quietly) and makes TensorFlow free traced functions
    without holding the GIL (`core/training/function_release.py`); returns the seconds it
    took. With an `import_gate.ImportGate`, the import stops before its next module while
    that is closed."""
    from contextlib import nullcontext

    from freezestudio.core.tf_import import import_tensorflow_quietly
    from freezestudio.core.training.function_release import release_functions_without_the_gil

    start = time.perf_counter()
    with gate.holding() if gate is not None else nullcontext():
        import_tensorflow_quietly()
    release_functions_without_the_gil()
    return time.perf_counter() - start
