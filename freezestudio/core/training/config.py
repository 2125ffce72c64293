"""The training engine's public vocabulary: config, control, reporter, reports, result.

Everything here is Qt-free and thread-agnostic. A GUI worker subclasses `Reporter` (its
methods are called on the training thread, in order) and calls `TrainingControl.cancel`,
`pause` and `resume` from any thread.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from enum import Enum

from freezestudio.core.errors import UserError

OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop")
SCHEDULES = ("constant", "cosine", "step")
CACHE_MODES = ("auto", "on", "off")
JIT_MODES = ("auto", "on", "off")



class RunStatus(str, Enum):
    """How a run ended (the value is what `train --json` prints as `status`)."""

    COMPLETED = "completed"
    CANCELLED = "cancelled"
    DIVERGED = "diverged"  # a non-finite loss or update: nothing was applied from it
    FAILED = "failed"

    __str__ = str.__str__
    __format__ = str.__format__


COMPLETED, CANCELLED, DIVERGED, FAILED = RunStatus


@dataclass
class TrainingConfig:
    """How to train.

    Attributes:
        epochs, batch_size, learning_rate: as usual.
        optimizer: "adam", "adamw", "sgd" (momentum `momentum`) or "rmsprop".
        weight_decay: for AdamW.
        schedule: "constant", "cosine" (to 0 over the run) or "step" (x0.1 at each third).
        loss: a Keras loss name, or None to choose automatically (see `losses`).
        metrics: compute accuracy (classification) or MAE (regression) as well.
        seed: seeds Python, NumPy and TensorFlow, and the shuffle.
        shuffle: reshuffle the training data every epoch.
        cache_features: "auto", "on" or "off" (see feature_cache).
        device: a device spec (see devices.select_devices), None for the default.
        mixed_precision: True: float16 on GPU (with loss scaling), bfloat16 on CPU; or
            a policy name ("mixed_float16", "mixed_bfloat16") to force one.
        jit_compile: "auto" (Keras's rule: XLA with a GPU and no distribute strategy),
            "on" or "off" (see xla.py).
        update_sizes: also report, per layer and step, the update size |dw|/|w| (norm of
            the applied update over the norm of the weights; `step.py`).
        multi_worker: train under the process's MultiWorkerMirroredStrategy (started by
            `cluster.start_multi_worker` first); needs a seed (every worker must shuffle
            and split alike) and no `device`.
    """

    epochs: int = 1
    batch_size: int = 32
    learning_rate: float = 1e-3
    optimizer: str = "adam"
    momentum: float = 0.9
    weight_decay: float = 0.004
    schedule: str = "constant"
    loss: str | None = None
    metrics: bool = True
    seed: int | None = None
    shuffle: bool = True
    cache_features: str = "auto"
    device: str | None = None
    mixed_precision: bool | str = False
    jit_compile: str = "auto"
    multi_worker: bool = False
    update_sizes: bool = False

    def validate(self) -> None:
        """Raises UserError for a value out of range."""
        if self.epochs < 1:
            raise UserError(f"epochs (--epochs) must be at least 1, got {self.epochs}")
        if self.batch_size < 1:
            raise UserError("batch size (--batch-size) must be at least 1, "
                            f"got {self.batch_size}")
        if not self.learning_rate > 0:
            raise UserError("learning rate (--learning-rate) must be positive, "
                            f"got {self.learning_rate}")
        if self.multi_worker and self.seed is None:
            raise UserError("multi-worker training needs a seed: every worker must shuffle "
                            "the data in the same order")
        if isinstance(self.mixed_precision, str) and \
                self.mixed_precision not in ("mixed_float16", "mixed_bfloat16"):
            raise UserError(f"unknown mixed precision policy '{self.mixed_precision}' "
                            "(mixed_float16 or mixed_bfloat16)")
        for value, allowed, what in ((self.optimizer, OPTIMIZERS, "optimizer"),
                                     (self.schedule, SCHEDULES, "schedule"),
                                     (self.cache_features, CACHE_MODES, "cache-features"),
                                     (self.jit_compile, JIT_MODES, "jit-compile")):
            if value not in allowed:
                raise UserError(f"unknown {what} '{value}' (choose {', '.join(allowed)})")


class TrainingControl:
    """Cancel and pause flags shared between the caller's thread and the training thread.

    The engine calls `checkpoint()` before every step: it blocks while paused and returns
    True when the run must stop.
    """

    def __init__(self):
        self._cancel = threading.Event()
        self._running = threading.Event()
        self._running.set()

    def cancel(self) -> None:
        self._cancel.set()
        self._running.set()  # wake a paused run so it can stop

    def pause(self) -> None:
        self._running.clear()

    def resume(self) -> None:
        self._running.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    @property
    def paused(self) -> bool:
        return not self._running.is_set()

    def checkpoint(self) -> float:
        """Waits while paused; returns the seconds spent waiting."""
        if self._running.is_set():
            return 0.0
        start = time.perf_counter()
        self._running.wait()
        return time.perf_counter() - start


@dataclass
class RunInfo:
    """Sent once when the run starts (everything the user should see before the steps).

    Attributes:
        layer_paths: every layer that owns weights, in tree order (the grad-norm columns).
        receiving_layers: those whose weights receive gradient (the others stay empty).
        losses: the loss chosen per output, with the reason (`LossChoice.describe`).
        metric_names: the epoch metrics that will be reported.
        stages: per stage of the schedule that starts within the run (the epoch-1
            state first), `StagePlan.to_dict()`: the epoch and what changed.
    """

    epochs: int
    steps_per_epoch: int
    total_steps: int
    train_samples: int
    validation_samples: int
    layer_paths: list
    receiving_layers: list
    losses: list
    metric_names: list
    optimizer: str
    device: str
    feature_cache: str
    data: str
    notes: list = field(default_factory=list)
    xla: str = ""
    stages: list = field(default_factory=list)


@dataclass
class StepReport:
    """One training step. `grad_norms` maps every layer path of `RunInfo.layer_paths` to
    the L2 norm of its weights' gradients, None where the layer receives none;
    `update_sizes` (only with `TrainingConfig.update_sizes`, else None) maps them alike
    to |dw|/|w| of the step."""

    epoch: int
    step: int
    batch: int
    loss: float
    grad_norms: dict
    steps_per_second: float
    eta_seconds: float
    elapsed: float
    update_sizes: dict | None = None


@dataclass
class StageReport:
    """A schedule stage starts (before the first step of its epoch).

    Attributes:
        epoch: its first epoch; index: its place in the schedule (1 = the first stage).
        description: one line (what it changes, what trains, the feature cache).
        receiving_layers: the layers that receive gradient from now on.
        details: its `RunInfo.stages` entry.
    """

    epoch: int
    index: int
    description: str
    receiving_layers: list
    details: dict


@dataclass
class EpochReport:
    epoch: int
    loss: float
    metrics: dict
    val_loss: float | None
    val_metrics: dict
    seconds: float

    def as_row(self) -> dict:
        row = {"epoch": self.epoch, "loss": self.loss}
        row.update(self.metrics)
        if self.val_loss is not None:
            row["val_loss"] = self.val_loss
            row.update({f"val_{k}": v for k, v in self.val_metrics.items()})
        return row


@dataclass
class RunResult:
    """How the run ended.

    Attributes:
        status: "completed", "cancelled", "diverged" (NaN/Inf) or "failed".
        message: for anything but "completed", what happened (names the step).
        integrity: the IntegrityReport (None if the run failed before training).
        weights_before: a WeightSnapshot of the document before the run (for undo).
        details: for "failed", the traceback (for a log file).
        notes: what the user should know that only the steps found out (XLA could not
            compile the step, it ran without).
    """

    status: RunStatus
    message: str = ""
    steps: int = 0
    seconds: float = 0.0
    final_loss: float | None = None
    history: list = field(default_factory=list)
    integrity: object = None
    received: list = field(default_factory=list)
    weights_before: object = None
    info: RunInfo | None = None
    details: str = ""
    notes: list = field(default_factory=list)

    @property
    def steps_per_second(self) -> float:
        return self.steps / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict:
        return {
            "status": self.status,
            "message": self.message,
            "steps": self.steps,
            "seconds": round(self.seconds, 4),
            "steps_per_second": round(self.steps_per_second, 3),
            "final_loss": self.final_loss,
            "history": [e.as_row() for e in self.history],
            "losses": self.info.losses if self.info else [],
            "feature_cache": self.info.feature_cache if self.info else "",
            "xla": self.info.xla if self.info else "",
            "notes": list(self.notes),
            "stages": self.info.stages if self.info else [],
            "integrity": self.integrity.to_dict() if self.integrity is not None else None,
        }


class Reporter:
    """Receives the run's events; every method is optional. Called on the training thread."""

    def run_started(self, info: RunInfo) -> None:
        pass

    def stage_started(self, report: StageReport) -> None:
        pass

    def step_finished(self, report: StepReport) -> None:
        pass

    def epoch_finished(self, report: EpochReport) -> None:
        pass

    def run_finished(self, result: RunResult) -> None:
        pass


class MultiReporter(Reporter):
    """Forwards every event to several reporters, in order."""

    def __init__(self, *reporters):
        self.reporters = [r for r in reporters if r is not None]

    def run_started(self, info):
        for r in self.reporters:
            r.run_started(info)

    def stage_started(self, report):
        for r in self.reporters:
            r.stage_started(report)

    def step_finished(self, report):
        for r in self.reporters:
            r.step_finished(report)

    def epoch_finished(self, report):
        for r in self.reporters:
            r.epoch_finished(report)

    def run_finished(self, result):
        for r in self.reporters:
            r.run_finished(result)


class RunClock:
    """Elapsed run time without pauses, and a recent steps-per-second rate."""

    def __init__(self):
        self.start = time.perf_counter()
        self.paused = 0.0
        self.recent = deque(maxlen=50)

    def pause(self, seconds: float) -> None:
        self.paused += seconds
        if seconds:
            self.recent.clear()

    def elapsed(self) -> float:
        return time.perf_counter() - self.start - self.paused

    def tick(self) -> float:
        now = self.elapsed()
        self.recent.append(now)
        if len(self.recent) < 2:
            return 1.0 / now if now > 0 else 0.0
        return (len(self.recent) - 1) / (self.recent[-1] - self.recent[0] or 1e-9)
