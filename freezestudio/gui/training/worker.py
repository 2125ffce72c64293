"""Training off the GUI thread: a QObject worker on its own QThread, reporting by signals.

`TrainingWorker` lives in a `TrainingThread`; the panel sends it requests through queued
signals (`preview` reads a data source and checks it against the model, `train` runs the
core `Trainer`). During a run a `_SignalReporter` (the core's `Reporter`) turns every
event into a signal; their receivers are `@Slot` methods of main-thread objects, so Qt
queues each call into the GUI thread (docs/architecture.md: never connect them to a lambda, which
would run in the worker thread). The worker never touches a widget.

Pause, resume and stop go through the run's `TrainingControl` (thread-safe events),
called directly from the GUI thread: a queued request would wait behind the run.

As in `workers.py`, the thread's event loop runs inside a Python frame
(`TrainingThread.run` calls `exec()`), so every slot of the worker runs under one
long-lived Python thread state (TensorFlow keeps per-thread state).
"""

from __future__ import annotations

import contextlib
import gc
import sys
import threading
import traceback
from dataclasses import dataclass, field

from PySide6.QtCore import QObject, QThread, Signal, Slot

from freezestudio.core.errors import UserError
from freezestudio.core.training.config import Reporter, TrainingConfig, TrainingControl

DEMO_SOURCE = "demo"
IDLE, PREPARING, RUNNING, PAUSED, STOPPING = "idle", "preparing", "running", "paused", "stopping"
RUN_SWITCH_INTERVAL_S = 5e-6


@dataclass(frozen=True)
class DataSpec:
    """Where the training data come from and how validation is split off.

    Attributes:
        source: a file or folder path, or "demo" (the bundled data for the demo models).
        validation_split: None (the source's own validation data), 0 (none) or a fraction.
        seed: for the split's shuffle.
        target: CSV label column (None: the last).
    """

    source: str
    validation_split: float | None = None
    seed: int | None = None
    target: str | None = None


@dataclass
class Preview:
    """What a data source holds and whether it fits the model.

    Attributes:
        spec: the request.
        data: the loaded `TrainingData` (None if it could not be read).
        summary: `TrainingData.summary()`.
        error: why the data cannot be used (unreadable, or it does not fit the model).
        losses: the loss chosen automatically per output, with the reason.
        devices: the devices TensorFlow can run on (`/CPU:0`, ...).
    """

    spec: DataSpec
    data: object = None
    summary: dict = field(default_factory=dict)
    error: str = ""
    losses: list = field(default_factory=list)
    devices: list = field(default_factory=list)


@dataclass
class TrainRequest:
    document: object
    spec: DataSpec
    config: TrainingConfig
    control: TrainingControl
    data: object = None  # a TrainingData already read for `spec`, else it is read first
    run_id: int = 0


@dataclass
class RunOutcome:
    """How a run request ended.

    Attributes:
        result: the core's `RunResult` (None when the run was refused before training).
        error: the refusal's message (bad data, bad option) or an unexpected failure's.
        details: a traceback for an unexpected failure.
        before, after: `{weight id: array}` of the weights the run changed, before and
            after (for the undo command).
    """

    run_id: int
    result: object = None
    error: str = ""
    details: str = ""
    before: dict = field(default_factory=dict)
    after: dict = field(default_factory=dict)


def _model_path(document):
    return getattr(document, "source_path", None)


def read_preview(document, spec: DataSpec) -> Preview:
    """Reads the data source, checks it against the document's model and tells the loss a
    run would choose, without changing the document (`Trainer.prepare` would write its
    flags, which must not happen outside a run)."""
    from freezestudio.core.data import load_data
    from freezestudio.core.model.signature import model_io
    from freezestudio.core.training.devices import list_devices
    from freezestudio.core.training.trainer import preview_losses

    preview = Preview(spec)
    try:
        preview.devices = [d.name for d in list_devices()]
    except Exception:  # noqa: BLE001 - the device list is a convenience
        preview.devices = []
    try:
        io = model_io(document)
        data = load_data(spec.source, io, target=spec.target,
                         validation_split=spec.validation_split, seed=spec.seed,
                         model_path=_model_path(document))
        preview.data = data
        preview.summary = data.summary()
        preview.losses = [(c.name, c.describe()) for c in preview_losses(document, data)]
    except UserError as exc:
        preview.error = str(exc)
    return preview


class _SignalReporter(Reporter):
    """The core's reporter interface as signals of the worker (called on its thread)."""

    def __init__(self, worker: TrainingWorker, run_id: int):
        self.worker, self.run_id = worker, run_id

    def run_started(self, info) -> None:
        self.worker.run_started.emit(self.run_id, info)

    def step_finished(self, report) -> None:
        self.worker.step_finished.emit(self.run_id, report)

    def epoch_finished(self, report) -> None:
        self.worker.epoch_finished.emit(self.run_id, report)


class TrainingWorker(QObject):
    """Reads data and trains, one request at a time, on its thread.

    Signals (all carry the run id first, except `preview_ready`):
        preview_ready(Preview), run_started(int, RunInfo), step_finished(int, StepReport),
        epoch_finished(int, EpochReport), run_finished(RunOutcome).

    Attributes:
        idle: set whenever no run is in progress (the GUI thread may wait on it).
        outcome: the last run's outcome, also available without the event loop.
    """

    preview_ready = Signal(object)
    run_started = Signal(int, object)
    step_finished = Signal(int, object)
    epoch_finished = Signal(int, object)
    run_finished = Signal(object)

    def __init__(self):
        super().__init__()
        self.idle = threading.Event()
        self.idle.set()
        self.outcome: RunOutcome | None = None

    @Slot(object, object)
    def preview(self, document, spec: DataSpec) -> None:
        try:
            preview = read_preview(document, spec)
        except Exception as exc:  # noqa: BLE001 - shown to the user, not raised in Qt
            preview = Preview(spec, error=f"{type(exc).__name__}: {exc}")
        self.preview_ready.emit(preview)

    @Slot(object)
    def train(self, request: TrainRequest) -> None:
        outcome = RunOutcome(request.run_id)
        try:
            outcome = self._train(request)
        except Exception as exc:  # noqa: BLE001 - reported to the GUI, which shows it
            outcome.error = f"unexpected failure: {type(exc).__name__}: {exc}"
            outcome.details = traceback.format_exc()
        finally:
            self.outcome = outcome
            self.idle.set()
            self.run_finished.emit(outcome)

    def begin(self) -> None:
        """Marks a run as pending (call on the GUI thread before queuing `train`)."""
        self.idle.clear()

    def _train(self, request: TrainRequest) -> RunOutcome:
        from freezestudio.core.data import load_data
        from freezestudio.core.model.signature import model_io
        from freezestudio.core.training.integrity import WeightSnapshot
        from freezestudio.core.training.trainer import Trainer

        outcome = RunOutcome(request.run_id)
        document, spec = request.document, request.spec
        try:
            data = request.data
            if data is None:
                data = load_data(spec.source, model_io(document), target=spec.target,
                                 validation_split=spec.validation_split, seed=spec.seed,
                                 model_path=_model_path(document))
            if request.control.cancelled:
                outcome.error = "cancelled before training started"
                return outcome
            with gui_friendly_interpreter():
                result = Trainer(document, data, request.config).run(
                    _SignalReporter(self, request.run_id), request.control)
        except UserError as exc:
            outcome.error = str(exc)
            return outcome
        outcome.result = result
        integrity = result.integrity
        if integrity is not None and integrity.changed and result.weights_before is not None:
            changed = set(integrity.changed)
            after = WeightSnapshot.take(document).values
            outcome.before = {k: v for k, v in result.weights_before.values.items()
                              if k in changed}
            outcome.after = {k: v for k, v in after.items() if k in changed}
        return outcome


@contextlib.contextmanager
def gui_friendly_interpreter():
    """Keeps the GUI thread's waits for the GIL short while a run goes.

    Measured with a 5 ms timer in the GUI thread (2 shared cores):
    - a full garbage collection walks every tracked object: with TensorFlow and a model
      loaded that took ~200 ms, holding the GIL, whenever the run's tracing triggered
      one. `gc.freeze()` moves the objects alive now out of the collector's view for
      the run; `gc.unfreeze()` hands them back afterwards, so nothing is leaked;
    - tracing the step starves every other Python thread: TensorFlow's C API releases
      and at once re-takes the GIL around very many short calls, and a waiting thread
      only asks the holder to hand over once a whole switch interval passes without any
      hand-over, which these releases keep resetting; the waiter rarely wins the race
      to the lock. A probe thread waited up to 100-230 ms at a time while MobileNetV2's
      step was traced with a 0.5 ms interval, and at most 20-35 ms with
      `RUN_SWITCH_INTERVAL_S` (5 µs), with no measurable cost in tracing time or
      steps/s (a thread alone never switches). What remains are single C calls, e.g.
      TensorFlow removing a large step function from its context (~40 ms).
    """
    interval = sys.getswitchinterval()
    gc.freeze()
    sys.setswitchinterval(RUN_SWITCH_INTERVAL_S)
    try:
        yield
    finally:
        sys.setswitchinterval(interval)
        gc.unfreeze()


class TrainingThread(QThread):
    """A QThread whose event loop runs inside a Python frame (see the module docstring)."""

    def run(self) -> None:
        self.exec()
