"""The training engine: fine-tune a document's model on data, reporting every step.

`Trainer(document, data, config).run(reporter, control)` rebuilds everything from the
document's current edit state on every run (flags written, the set of variables that
receive gradient recomputed, a new optimizer built on exactly those), so a run never uses
a stale trainable set. Setup problems (data that do not fit, a bad option) raise
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
from dataclasses import dataclass, field

import numpy as np

from freezestudio.core.data import Split, TrainingData
from freezestudio.core.data.fit import check_fits, label_kind, prepare_split
from freezestudio.core.errors import UserError, first_line
from freezestudio.core.model.signature import check_traceable, forward_fn, is_keras, model_io
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
    StepReport,
    TrainingConfig,
    TrainingControl,
)
from freezestudio.core.training.devices import (
    apply_policy,
    mixed_precision_policy,
    replica_values,
    replicate_model,
    select_devices,
)
from freezestudio.core.training.feature_cache import (
    AUTO_LIMIT_BYTES,
    CachePlan,
    compute_features,
    feature_bytes,
    plan_cache,
)
from freezestudio.core.training.integrity import WeightSnapshot, check_integrity
from freezestudio.core.training.losses import choose_losses, trained_compile_config
from freezestudio.core.training.step import (
    StepSpec,
    make_eval_step,
    make_optimizer,
    make_train_step,
    metric_names,
    metric_results,
    reset_metrics,
    seed_run,
)
from freezestudio.core.training.xla import resolve_jit_compile


@dataclass
class _Setup:
    info: RunInfo
    train: Split
    validation: Split | None
    losses: list
    columns: list
    receiving: list
    variables: list
    groups: list
    placement: object
    model: object
    mapping: dict
    cache: CachePlan
    policy: str | None = None
    missing: list = field(default_factory=list)
    jit_compile: bool = False


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
            self.document.set_compile_config(trained_compile_config(
                setup.losses, make_optimizer(self.config, setup.info.total_steps),
                self.config.metrics), origin="FreezeStudio's training run")
        missing = {setup.receiving[i].id for i in setup.missing}
        received = {w.id for w in setup.receiving} - missing
        result.received = sorted(received)
        result.integrity = check_integrity(self.document, before, received)
        result.weights_before = before
        result.info = setup.info
        if result.integrity.changed:  # on the worker thread: the GUI notifies after the run
            self.document.weights_changed(notify=False)
        reporter.run_finished(result)
        return result

    # --- setup ----------------------------------------------------------------------
    def _setup(self, replicate: bool = True) -> _Setup:
        cfg, document = self.config, self.document
        cfg.validate()
        document.write_flags()
        io = checked_io(document, self.data)
        kinds = [label_kind(spec, y) for spec, y in zip(io.outputs, self.data.train.y,
                                                        strict=True)]
        train = prepare_split(io, self.data.train, kinds)
        validation = prepare_split(io, self.data.validation, kinds) \
            if self.data.validation is not None else None
        losses = choose_losses(io.outputs, kinds, train.y, document.compile_config, cfg.loss)
        columns = [node for node in document.root.walk() if node.weights]
        receiving = [w for w in document.weights if document.receives_gradient(w) is True]
        notes = list(self.data.notes)
        placement = select_devices(cfg.device, cfg.multi_worker)
        model, mapping = (document.model if is_keras(document) else None), {}
        if placement.distributed:
            if model is None:
                raise UserError("several devices need a Keras model; a generic SavedModel "
                                "trains on one device")
            if replicate:
                model, mapping = replicate_model(model, placement.strategy)
        if cfg.seed is not None:
            seed_run(cfg.seed, model)
        cache = CachePlan(False, False, "feature caching off")
        if model is not None and not placement.distributed:
            cache = plan_cache(document, model, cfg.cache_features)
            if cache.enabled and cfg.cache_features == "auto" and \
                    feature_bytes(cache, len(train)) > AUTO_LIMIT_BYTES:
                cache = CachePlan(False, False, "the cached features would not fit in memory")
        elif cfg.cache_features == "on":
            raise UserError("--cache-features on needs a Keras model on one device")
        variables = [mapping.get(id(w.variable), w.variable) for w in receiving]
        index = {id(w.variable): i for i, w in enumerate(receiving)}
        groups, receiving_layers = [], []
        for node in columns:
            members = [index[id(w.variable)] for w in node.weights if id(w.variable) in index]
            if members:
                groups.append(members)
                receiving_layers.append(node.path)
        if not variables:
            notes.append("no weight receives gradient: the run changes nothing but "
                         "BatchNorm statistics")
        policy = None
        if cfg.mixed_precision:
            policy = cfg.mixed_precision if isinstance(cfg.mixed_precision, str) \
                else mixed_precision_policy(placement)
            if model is None:
                notes.append("mixed precision needs a Keras model: a generic SavedModel "
                             "trains in its own dtypes")
                policy = None
            else:
                notes.append(f"mixed precision: {policy}" + (" with dynamic loss scaling"
                                                             if policy == "mixed_float16" else ""))
        jit = resolve_jit_compile(cfg.jit_compile, model, placement.distributed)
        steps_per_epoch = math.ceil(len(train) / cfg.batch_size)
        optimizer = cfg.optimizer + (f" (weight decay {cfg.weight_decay:g})"
                                     if cfg.optimizer == "adamw" else "")
        info = RunInfo(
            epochs=cfg.epochs, steps_per_epoch=steps_per_epoch,
            total_steps=steps_per_epoch * cfg.epochs, train_samples=len(train),
            validation_samples=len(validation) if validation is not None else 0,
            layer_paths=[n.path for n in columns], receiving_layers=receiving_layers,
            losses=[c.describe() for c in losses],
            metric_names=metric_names(losses, cfg.metrics, validation is not None),
            optimizer=f"{optimizer}, learning rate {cfg.learning_rate:g} ({cfg.schedule})",
            device=placement.describe(), feature_cache=cache.reason,
            data=self.data.describe(), notes=notes, xla=jit.describe())
        return _Setup(info, train, validation, losses, columns, receiving, variables, groups,
                      placement, model, mapping, cache, policy, jit_compile=jit.enabled)

    # --- the loop -------------------------------------------------------------------
    def _train(self, setup: _Setup, reporter: Reporter, control: TrainingControl) -> RunResult:
        cfg = self.config
        clock = RunClock()
        result = RunResult(COMPLETED)
        reporter.run_started(setup.info)
        try:
            spec, train_step, eval_step, batches, val_batches = self._build(setup)
        except Exception as exc:  # noqa: BLE001 - e.g. an unreadable image while caching
            result.details = traceback.format_exc()
            return self._stopped(result, FAILED, clock, f"preparing the run failed: "
                                 f"{_first_line(exc)}{self.data.explain_failure(exc)}")
        epoch = batch = 0
        try:
            for epoch in range(1, cfg.epochs + 1):
                reset_metrics(spec.metrics)
                epoch_start, loss_sum, seen = time.perf_counter(), 0.0, 0
                for batch in range(1, setup.info.steps_per_epoch + 1):
                    clock.pause(control.checkpoint())
                    if control.cancelled:
                        return self._stopped(result, CANCELLED, clock, f"cancelled before "
                                             f"step {result.steps + 1} (epoch {epoch}, "
                                             f"batch {batch})")
                    values = train_step(batches).numpy()
                    result.steps += 1
                    # under loss scaling an overflowing step is skipped by the optimizer
                    # (and the scale lowered): only a non-finite loss means divergence
                    checked = values[:1] if setup.policy == "mixed_float16" else values
                    if not np.all(np.isfinite(checked)):
                        return self._stopped(result, DIVERGED, clock,
                                             _divergence(values, result.steps, epoch, batch,
                                                         setup.placement.distributed))
                    loss_sum += float(values[0]) * float(values[1])
                    seen += float(values[1])
                    result.final_loss = float(values[0])
                    reporter.step_finished(self._step_report(
                        setup, values, epoch, batch, result.steps, clock))
                if control.cancelled:
                    return self._stopped(result, CANCELLED, clock,
                                         f"cancelled after step {result.steps}")
                train_metrics = metric_results(spec.metrics)
                val_loss, val_metrics = self._evaluate(spec, eval_step, val_batches,
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
            setup.missing = list(spec.missing)
            result.notes += spec.notes
        result.seconds = clock.elapsed()
        return result

    def _build(self, setup: _Setup):
        """Features (when cached), the step functions and the data iterators of a run."""
        cfg = self.config
        train, validation = setup.train, setup.validation
        with setup.placement.scope():
            forward_model = setup.model
            if setup.cache.enabled:
                train, validation = self._cached(setup, train, validation)
                forward_model = setup.cache.head
            spec = self._step_spec(setup, forward_model)
            train_step, eval_step = make_train_step(spec), make_eval_step(spec)
        data = TrainingData(self.data.source, train, image=None if setup.cache.enabled
                            else self.data.image)
        train_ds = self._distribute(setup, data.dataset(train, cfg.batch_size, cfg.shuffle,
                                                        cfg.seed, repeat=True))
        val_batches = None
        if validation is not None:
            val_batches = iter(self._distribute(setup, data.dataset(
                validation, cfg.batch_size, repeat=True)))
        return spec, train_step, eval_step, iter(train_ds), val_batches

    @staticmethod
    def _stopped(result: RunResult, status: str, clock, message: str) -> RunResult:
        result.status, result.message, result.seconds = status, message, clock.elapsed()
        return result

    def _step_spec(self, setup: _Setup, forward_model) -> StepSpec:
        metrics = []
        for choice in setup.losses:
            prefix = f"{choice.output}_" if len(setup.losses) > 1 else ""
            metrics.append(choice.metrics(prefix) if self.config.metrics else [])
        optimizer = make_optimizer(self.config, setup.info.total_steps)
        loss_scale = setup.policy == "mixed_float16"
        if loss_scale:
            import keras

            optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
        if setup.variables:
            optimizer.build(setup.variables)
        regularization = (lambda: list(forward_model.losses)) if forward_model is not None \
            else None
        return StepSpec(forward_fn(self.document, forward_model), setup.variables,
                        setup.groups, [c.build() for c in setup.losses], metrics, optimizer,
                        regularization, setup.placement.strategy, loss_scale,
                        setup.jit_compile)

    def _cached(self, setup: _Setup, train: Split, validation: Split | None):
        """The splits with the prefix's features in place of the inputs."""
        source = TrainingData(self.data.source, train, image=self.data.image)
        bs = max(self.config.batch_size, 64)
        features = compute_features(setup.cache, source.dataset(train, bs))
        train = Split(features, train.y)
        if validation is not None:
            val_features = compute_features(setup.cache, source.dataset(validation, bs))
            validation = Split(val_features, validation.y)
        return train, validation

    @staticmethod
    def _distribute(setup: _Setup, dataset):
        return setup.placement.distribute(dataset)

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
    def _step_report(setup: _Setup, values, epoch, batch, step, clock) -> StepReport:
        norms = dict.fromkeys(setup.info.layer_paths)
        norms.update(zip(setup.info.receiving_layers, (float(v) for v in values[2:]),
                         strict=True))
        rate = clock.tick()
        remaining = setup.info.total_steps - step
        return StepReport(epoch, step, batch, float(values[0]), norms, rate,
                          remaining / rate if rate > 0 else float("inf"), clock.elapsed())

    def _copy_back(self, setup: _Setup, result: RunResult) -> None:
        """After a run on replicas, the trained values go back to the document's variables
        (not after a diverged run: its last step was applied on the replicas)."""
        if not setup.mapping or result.status == DIVERGED:
            return
        originals = [w.variable for w in self.document.weights if id(w.variable) in setup.mapping]
        for original, value in zip(originals, replica_values(
                setup.placement.strategy, originals, setup.mapping, setup.variables), strict=True):
            original.assign(value)


def _first_line(exc: Exception) -> str:
    return f"{type(exc).__name__}: {first_line(exc, default='')}"


def _divergence(values, step: int, epoch: int, batch: int, distributed: bool) -> str:
    what = f"the loss became {values[0]}" if not np.isfinite(values[0]) else \
        "the gradients became NaN/Inf"
    kept = ("the run's changes were discarded" if distributed else
            f"the step was not applied, the model keeps the weights after step {step - 1}")
    return (f"{what} at step {step} (epoch {epoch}, batch {batch}); {kept}. Lower the "
            "learning rate or check the data for NaN/Inf values")


def checked_io(document, data: TrainingData):
    """The model's inputs and outputs, once it is known that TensorFlow can trace the model
    and that the data fit it.

    Raises:
        UserError: it cannot be traced, or the data do not fit.
    """
    if is_keras(document):
        check_traceable(document.model, "train this model")
    io = model_io(document)
    check_fits(document, data, io)
    return io


def preview_losses(document, data: TrainingData, loss: str | None = None) -> list:
    """The loss per output a run would use (`LossChoice`, with `describe()`), after
    checking that the data fit; reads the document without changing anything.

    Raises:
        UserError: the data do not fit the model, or `loss` is unknown or does not fit.
    """
    io = checked_io(document, data)
    kinds = [label_kind(spec, y) for spec, y in zip(io.outputs, data.train.y, strict=True)]
    train = prepare_split(io, data.train, kinds)
    return choose_losses(io.outputs, kinds, train.y, document.compile_config, loss)


def train(document, data: TrainingData, config: TrainingConfig | None = None,
          reporter: Reporter | None = None, control: TrainingControl | None = None) -> RunResult:
    """Shorthand for `Trainer(document, data, config).run(reporter, control)`."""
    return Trainer(document, data, config).run(reporter, control)
