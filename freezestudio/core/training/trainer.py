"""The training engine: fine-tune a document's model on data, reporting every step.

`Trainer(document, data, config).run(reporter, control)` rebuilds everything from the
document's current edit state on every run (flags written, the set of variables that
receive gradient recomputed, new optimizers built on exactly those), so a run never uses
a stale trainable set (`setup.py`). A schedule's stage (`stages.py`) starts at the
beginning of its epoch: its flags are written, its steps and optimizer groups built
(`assembly.py`), and reporters get `stage_started`; at the end the document's own flags
are written back. Setup problems (data that do not fit, a bad option) raise
`UserError` before any weight is touched; what happens during the steps ends the run
cleanly with a status and a message naming the step (`RunResult`), followed by the
integrity report.

Typical use from a worker thread::

    control = TrainingControl()          # control.cancel()/pause()/resume() from the GUI
    result = Trainer(document, data, TrainingConfig(epochs=3)).run(my_reporter, control)
"""

from __future__ import annotations

import math
import time
import traceback

import numpy as np

from freezestudio.core.data import TrainingData
from freezestudio.core.errors import first_line
from freezestudio.core.training.assembly import build_stage
from freezestudio.core.training.config import (
    CANCELLED,
    COMPLETED,
    DIVERGED,
    FAILED,
    EpochReport,
    Reporter,
    RunClock,
    RunInfo,
    RunResult,
    StageReport,
    StepReport,
    TrainingConfig,
    TrainingControl,
)
from freezestudio.core.training.devices import apply_policy, replica_values
from freezestudio.core.training.integrity import WeightSnapshot, check_integrity
from freezestudio.core.training.losses import trained_compile_config
from freezestudio.core.training.setup import RunSetup, prepare_setup
from freezestudio.core.training.stages import statistics_reasons
from freezestudio.core.training.step import (
    StepSpec,
    make_optimizer,
    metric_results,
    reset_metrics,
)


class Trainer:
    """Trains `document.model` in place.

    Args:
        document: the document (its edit state decides what trains).
        data: from `data.load_data`.
        config: a TrainingConfig.
    """

    def __init__(self, document, data: TrainingData, config: TrainingConfig | None = None):
        self.document = document
        self.data = data
        self.config = config or TrainingConfig()

    def prepare(self) -> RunInfo:
        """Checks everything and returns what a run would do, without training (and
        without replicating the model over several devices).

        Raises:
            UserError: data that do not fit, a bad option, an unknown device.
        """
        return self._setup(replicate=False).info

    def run(self, reporter: Reporter | None = None,
            control: TrainingControl | None = None) -> RunResult:
        """Runs the training; see the module docstring.

        Raises:
            UserError: before training, as `prepare`.
        """
        reporter = reporter or Reporter()
        control = control or TrainingControl()
        setup = self._setup()
        self.document.mark_compiled()  # the step and optimizer now match the edits
        before = WeightSnapshot.take(self.document)
        # Serialised before the loop: making an optimizer right after a large model's run
        # held the GIL ~90 ms (its first eager variable op), stalling the GUI thread.
        compile_config = trained_compile_config(
            setup.losses, make_optimizer(self.config, setup.info.total_steps),
            self.config.metrics)
        restore_policy = None
        if setup.policy and setup.model is not None:
            restore_policy = apply_policy(setup.model, setup.policy)
        try:
            result = self._train(setup, reporter, control)
        finally:
            if restore_policy is not None:
                restore_policy()
        self._copy_back(setup, result)
        if result.steps:  # what the weights were trained with is what saves keep
            self.document.set_compile_config(compile_config,
                                             origin="FreezeStudio's training run")
        received = setup.received
        result.received = sorted(received)
        result.integrity = check_integrity(self.document, before, received,
                                           statistics_reasons(setup.stages))
        result.weights_before = before
        result.info = setup.info
        if result.integrity.changed:  # on the worker thread: the GUI notifies after the run
            self.document.weights_changed(notify=False)
        reporter.run_finished(result)
        return result

    def _setup(self, replicate: bool = True) -> RunSetup:
        return prepare_setup(self.document, self.data, self.config, replicate)

    # --- the loop -------------------------------------------------------------------
    def _train(self, setup: RunSetup, reporter: Reporter, control: TrainingControl) -> RunResult:
        cfg = self.config
        clock = RunClock()
        result = RunResult(COMPLETED)
        reporter.run_started(setup.info)
        try:
            built = build_stage(setup, cfg, self.data, self.document, setup.stages[0])
        except Exception as exc:  # noqa: BLE001 - e.g. an unreadable image while caching
            result.details = traceback.format_exc()
            return self._stopped(result, FAILED, clock, f"preparing the run failed: "
                                 f"{_first_line(exc)}{self.data.explain_failure(exc)}")
        epoch = batch = 0
        starts = {plan.from_epoch: plan for plan in setup.stages[1:]}
        try:
            for epoch in range(1, cfg.epochs + 1):
                if epoch in starts:
                    built = self._next_stage(setup, built, starts[epoch], reporter, result)
                spec, train_step = built.spec, built.train_step
                reset_metrics(spec.metrics)
                epoch_start, loss_sum, seen = time.perf_counter(), 0.0, 0
                for batch in range(1, setup.info.steps_per_epoch + 1):
                    clock.pause(control.checkpoint())
                    if control.cancelled:
                        return self._stopped(result, CANCELLED, clock, f"cancelled before "
                                             f"step {result.steps + 1} (epoch {epoch}, "
                                             f"batch {batch})")
                    values = train_step(built.batches).numpy()
                    result.steps += 1
                    # under loss scaling an overflowing step is skipped by the optimizer
                    # (and the scale lowered): only a non-finite loss means divergence;
                    # update sizes are not checked (an applied step that overflowed a
                    # weight shows in the next step's loss)
                    checked = values[:1] if setup.policy == "mixed_float16" else \
                        values[:2 + len(built.plan.trainables.receiving_layers)]
                    if not np.all(np.isfinite(checked)):
                        return self._stopped(result, DIVERGED, clock,
                                             _divergence(values, result.steps, epoch, batch,
                                                         setup.placement.distributed))
                    loss_sum += float(values[0]) * float(values[1])
                    seen += float(values[1])
                    result.final_loss = float(values[0])
                    reporter.step_finished(self._step_report(
                        setup, built.plan, values, epoch, batch, result.steps, clock))
                if control.cancelled:
                    return self._stopped(result, CANCELLED, clock,
                                         f"cancelled after step {result.steps}")
                train_metrics = metric_results(spec.metrics)
                val_loss, val_metrics = self._evaluate(spec, built.eval_step, built.val_batches,
                                                       setup.info.validation_samples,
                                                       cfg.batch_size)
                report = EpochReport(epoch, loss_sum / max(seen, 1), train_metrics, val_loss,
                                     val_metrics, time.perf_counter() - epoch_start)
                result.history.append(report)
                reporter.epoch_finished(report)
        except KeyboardInterrupt:
            return self._stopped(result, CANCELLED, clock, f"interrupted at step {result.steps}")
        except Exception as exc:  # noqa: BLE001 - data or step failure ends the run cleanly
            result.details = traceback.format_exc()
            return self._stopped(result, FAILED, clock, f"step {result.steps + 1} (epoch "
                                 f"{epoch}, batch {batch}) failed: {_first_line(exc)}"
                                 f"{self.data.explain_failure(exc)}")
        finally:
            setup.received.update(_received(built))
            result.notes += built.spec.notes
            self.document.write_flags()  # a stage wrote its own flags into the model
        result.seconds = clock.elapsed()
        return result

    def _next_stage(self, setup: RunSetup, built, plan, reporter: Reporter,
                    result: RunResult):
        """Ends the running stage and builds `plan`'s (its flags written first)."""
        setup.received.update(_received(built))
        result.notes += built.spec.notes
        setup.stage_document.restore(plan.snapshot)
        built = build_stage(setup, self.config, self.data, setup.stage_document, plan, built)
        reporter.stage_started(StageReport(plan.from_epoch, plan.index, plan.describe(),
                                           list(plan.trainables.receiving_layers),
                                           plan.to_dict()))
        return built

    @staticmethod
    def _stopped(result: RunResult, status: str, clock, message: str) -> RunResult:
        result.status, result.message, result.seconds = status, message, clock.elapsed()
        return result

    @staticmethod
    def _evaluate(spec: StepSpec, eval_step, batches, samples: int, batch_size: int):
        if batches is None:
            return None, {}
        reset_metrics(spec.metrics)
        total = np.zeros(2)
        for _ in range(math.ceil(samples / batch_size)):
            total += eval_step(batches).numpy()
        return float(total[0] / max(total[1], 1)), metric_results(spec.metrics)

    @staticmethod
    def _step_report(setup: RunSetup, plan, values, epoch, batch, step, clock) -> StepReport:
        receiving = plan.trainables.receiving_layers
        norms = _by_layer(setup.info.layer_paths, receiving, values[2:2 + len(receiving)])
        sizes = _by_layer(setup.info.layer_paths, receiving, values[2 + len(receiving):]) \
            if len(values) > 2 + len(receiving) else None
        rate = clock.tick()
        remaining = setup.info.total_steps - step
        return StepReport(epoch, step, batch, float(values[0]), norms, rate,
                          remaining / rate if rate > 0 else float("inf"), clock.elapsed(),
                          sizes)

    def _copy_back(self, setup: RunSetup, result: RunResult) -> None:
        """After a run on replicas, the trained values go back to the document's variables
        (not after a diverged run: its last step was applied on the replicas)."""
        if not setup.mapping or result.status == DIVERGED:
            return
        originals = [w.variable for w in self.document.weights if id(w.variable) in setup.mapping]
        for original, value in zip(originals, replica_values(
                setup.placement.strategy, originals, setup.mapping,
                setup.trainables.variables), strict=True):  # one stage: no schedule on replicas
            original.assign(value)


def _by_layer(paths: list, receiving: list, values) -> dict:
    """Every layer path -> its value (None for the layers outside `receiving`)."""
    result = dict.fromkeys(paths)
    result.update(zip(receiving, (float(v) for v in values), strict=True))
    return result


def _received(built) -> set:
    """Ids of the weights that received gradient in a stage (a None gradient, found when
    the step was traced, means none)."""
    if built is None:
        return set()
    missing = set(built.spec.missing)
    return {w.id for i, w in enumerate(built.plan.trainables.receiving) if i not in missing}


def _first_line(exc: Exception) -> str:
    return f"{type(exc).__name__}: {first_line(exc, default='')}"


def _divergence(values, step: int, epoch: int, batch: int, distributed: bool) -> str:
    what = f"the loss became {values[0]}" if not np.isfinite(values[0]) else \
        "the gradients became NaN/Inf"
    kept = ("the run's changes were discarded" if distributed else
            f"the step was not applied, the model keeps the weights after step {step - 1}")
    return (f"{what} at step {step} (epoch {epoch}, batch {batch}); {kept}. Lower the "
            "learning rate or check the data for NaN/Inf values")


def train(document, data: TrainingData, config: TrainingConfig | None = None,
          reporter: Reporter | None = None, control: TrainingControl | None = None) -> RunResult:
    """Shorthand for `Trainer(document, data, config).run(reporter, control)`."""
    return Trainer(document, data, config).run(reporter, control)
