"""A training run as a background task: the request, the task function, the outcome.

`train(request, state)` runs on the training session's `TaskHost` thread: it reads the
data if the preview has not, runs the core `Trainer` inside `gui_friendly_interpreter`,
and returns a `RunOutcome` whatever happens (a refusal or a failure is its `error`). The
core's `Reporter` events (`RunInfo`, `StepReport`, `EpochReport`) go to the GUI thread as
the task's partial results (`state.send`).

Stopping is the task's cancel: it cancels the run's `TrainingControl` (which also wakes a
paused run). Pause and resume call the control directly from the GUI thread: a queued
request would wait behind the run.
"""

from __future__ import annotations

import contextlib
import traceback
from dataclasses import dataclass, field

from freezestudio.core.errors import UserError
from freezestudio.core.training.config import Reporter, TrainingConfig, TrainingControl
from freezestudio.core.training.preview import DataSpec, read_data
from freezestudio.gui.background.gc_guard import freeze_survivors
from freezestudio.gui.background.gil_handover import quick_handover
from freezestudio.gui.background.threads import TaskState


@dataclass
class TrainRequest:
    """One run to do.

    Attributes:
        document: the model to train (read-only for everything else meanwhile).
        spec: the data source.
        config: how to train.
        control: pause/resume from the GUI thread; the task's cancel cancels it.
        data: a `TrainingData` already read for `spec`, else it is read first.
        run_id: tells this run's outcome and events from an earlier run's.
    """

    document: object
    spec: DataSpec
    config: TrainingConfig
    control: TrainingControl
    data: object = None
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


class _TaskReporter(Reporter):
    """The core's reporter interface as the task's partial results (called on its thread)."""

    def __init__(self, state: TaskState):
        self.state = state

    def run_started(self, info) -> None:
        self.state.send(info)

    def stage_started(self, report) -> None:
        self.state.send(report)

    def step_finished(self, report) -> None:
        self.state.send(report)

    def epoch_finished(self, report) -> None:
        self.state.send(report)


def train(request: TrainRequest, state: TaskState) -> RunOutcome:
    """The task of one run (for `TaskHost.submit`, with the request bound).

    Args:
        request: what to train.
        state: the task's state; cancelling it stops the run within one step.

    Returns:
        The outcome: never raises (an unexpected failure is its `error` and `details`).
    """
    state.add_cancel_callback(request.control.cancel)
    outcome = RunOutcome(request.run_id)
    try:
        return _train(request, state)
    except Exception as exc:  # noqa: BLE001 - reported to the GUI, which shows it
        outcome.error = f"unexpected failure: {type(exc).__name__}: {exc}"
        outcome.details = traceback.format_exc()
        return outcome


def _train(request: TrainRequest, state: TaskState) -> RunOutcome:
    from freezestudio.core.training.integrity import WeightSnapshot
    from freezestudio.core.training.trainer import Trainer

    outcome = RunOutcome(request.run_id)
    document = request.document
    try:
        data = request.data if request.data is not None else read_data(document, request.spec)
        if request.control.cancelled:
            outcome.error = "cancelled before training started"
            return outcome
        with gui_friendly_interpreter():
            result = Trainer(document, data, request.config).run(_TaskReporter(state),
                                                                 request.control)
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

    The objects alive when the run starts are moved out of the garbage collector's view
    (`gc_guard.freeze_survivors`; they stay out until the window releases its document),
    the interpreter hands the GIL over quickly (`gil_handover.quick_handover`) for the
    duration of the block, and TensorFlow frees the run's traced functions without
    holding the GIL (`core/training/function_release.py`).
    """
    from freezestudio.core.training.function_release import release_functions_without_the_gil

    # Measured with a 5 ms timer in the GUI thread (2 shared cores):
    # - a full garbage collection walks every tracked object: with TensorFlow and a model
    #   loaded that took ~200 ms, holding the GIL, whenever the run's tracing triggered one;
    #   unfrozen again after the run, the first full collection on the GUI thread took
    #   262-570 ms after a MobileNetV2 run, against 23-35 ms for what the run left;
    # - TensorFlow's own removal of the run's step function held the GIL 53-80 ms at the
    #   end of a MobileNetV2 run; without the GIL it stalls nothing.
    release_functions_without_the_gil()
    freeze_survivors()
    with quick_handover():
        yield
