"""Everything a run decides before its first step (`prepare_setup`), Qt-free.

The set of variables that receive gradient is recomputed from the document's current
edit state for every run (never a stale trainable set), with each variable's
learning-rate multiplier (`lr_groups`). Problems found here raise `UserError` before
any weight is touched.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from freezestudio.core.data import Split, TrainingData
from freezestudio.core.data.fit import check_fits, label_kind, prepare_split
from freezestudio.core.edits.fine_tuning import resolve_multipliers
from freezestudio.core.errors import UserError
from freezestudio.core.model.signature import check_traceable, is_keras, model_io
from freezestudio.core.training.config import RunInfo
from freezestudio.core.training.devices import (
    mixed_precision_policy,
    replicate_model,
    select_devices,
)
from freezestudio.core.training.feature_cache import (
    AUTO_LIMIT_BYTES,
    CachePlan,
    feature_bytes,
    plan_cache,
)
from freezestudio.core.training.losses import choose_losses
from freezestudio.core.training.lr_groups import idle_multiplier_note, plan_groups
from freezestudio.core.training.stages import later_cache, plan_stages
from freezestudio.core.training.step import metric_names, seed_run
from freezestudio.core.training.xla import resolve_jit_compile


@dataclass
class Trainables:
    """What receives gradient (in a run, or in one stage of its schedule).

    Attributes:
        receiving: the WeightNodes that receive gradient, in document order.
        variables: their variables (the replicas' under a strategy), in that order.
        norm_groups: per reported layer, the indices into `variables` of its weights.
        receiving_layers: the paths of those layers.
        multipliers: the learning-rate multiplier of each variable.
        cache: the feature-cache plan for this trainable set.
    """

    receiving: list
    variables: list
    norm_groups: list
    receiving_layers: list
    multipliers: list
    cache: CachePlan


@dataclass
class RunSetup:
    """A decided run.

    Attributes:
        stages: the `StagePlan`s (stage 0: the document's own state, then the
            schedule's stages that start within the run).
        stage_document: the detached document copy the stages restore their edit state
            into (None without a schedule).
        received: filled during the run: ids of the weights that received gradient.
    """

    info: RunInfo
    train: Split
    validation: Split | None
    losses: list
    columns: list
    stages: list
    stage_document: object
    placement: object
    model: object
    mapping: dict
    policy: str | None = None
    received: set = field(default_factory=set)
    jit_compile: bool = False

    @property
    def trainables(self) -> Trainables:
        """What receives gradient from epoch 1."""
        return self.stages[0].trainables


def trainables_of(document, columns: list, mapping: dict, multipliers: dict,
                  cache: CachePlan) -> Trainables:
    """The receiving set of `document`'s current edit state."""
    receiving = [w for w in document.weights if document.receives_gradient(w) is True]
    variables = [mapping.get(id(w.variable), w.variable) for w in receiving]
    index = {id(w.variable): i for i, w in enumerate(receiving)}
    norm_groups, receiving_layers = [], []
    for node in columns:
        members = [index[id(w.variable)] for w in node.weights if id(w.variable) in index]
        if members:
            norm_groups.append(members)
            receiving_layers.append(node.path)
    return Trainables(receiving, variables, norm_groups, receiving_layers,
                      [multipliers[w.id] for w in receiving], cache)


def cache_plan(document, model, config, samples: int) -> CachePlan:
    """Whether and where the run caches features (feature_cache.plan_cache), within the
    memory limit of "auto". `model` is the document's Keras model or, under a strategy,
    its replica (None for a generic SavedModel).

    Raises:
        UserError: "on" where no prefix can be cached.
    """
    if model is None:
        if config.cache_features == "on":
            raise UserError("--cache-features on needs a Keras model")
        return CachePlan(False, False, "feature caching off")
    cache = plan_cache(document, model, config.cache_features)
    if cache.enabled and config.cache_features == "auto" and \
            feature_bytes(cache, samples) > AUTO_LIMIT_BYTES:
        cache = CachePlan(False, False, "the cached features would not fit in memory")
    return cache


def prepare_setup(document, data: TrainingData, config, replicate: bool = True) -> RunSetup:
    """Checks everything and decides the run (see the module docstring).

    Args:
        replicate: replicate the model over several devices (False for a preview).

    Raises:
        UserError: data that do not fit, a bad option, an unknown device, a multiplier
            rule that matches nothing.
    """
    cfg = config
    cfg.validate()
    document.write_flags()
    io = checked_io(document, data)
    kinds = [label_kind(spec, y) for spec, y in zip(io.outputs, data.train.y, strict=True)]
    train = prepare_split(io, data.train, kinds)
    validation = prepare_split(io, data.validation, kinds) \
        if data.validation is not None else None
    losses = choose_losses(io.outputs, kinds, train.y, document.compile_config, cfg.loss)
    columns = [node for node in document.root.walk() if node.weights]
    notes = list(data.notes)
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
    multipliers = resolve_multipliers(document, document.fine_tuning.lr_multipliers)
    trainables = trainables_of(document, columns, mapping, multipliers,
                               cache_plan(document, model, cfg, len(train)))
    schedule = document.fine_tuning.schedule
    if schedule and (placement.distributed or cfg.mixed_precision == "mixed_float16"
                     or (cfg.mixed_precision is True and placement.has_gpu)):
        raise UserError("a schedule trains on one device and without float16 loss scaling")

    def trainables_for(copy, stage_multipliers, _index):
        return trainables_of(copy, columns, mapping, stage_multipliers, later_cache(
            lambda: cache_plan(copy, model, cfg, len(train))))

    stages, stage_document = plan_stages(document, cfg.epochs, trainables_for, trainables)
    notes += [f"the schedule's stage from epoch {s.from_epoch} does not start within the "
              f"run's {cfg.epochs} epoch(s)" for s in schedule if s.from_epoch > cfg.epochs]
    receiving = {w.id for plan in stages for w in plan.trainables.receiving}
    idle = idle_multiplier_note(document, multipliers, receiving)
    if idle:
        notes.append(idle)
    if not trainables.variables:
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
    groups = _groups_text(trainables.multipliers)
    info = RunInfo(
        epochs=cfg.epochs, steps_per_epoch=steps_per_epoch,
        total_steps=steps_per_epoch * cfg.epochs, train_samples=len(train),
        validation_samples=len(validation) if validation is not None else 0,
        layer_paths=[n.path for n in columns], receiving_layers=trainables.receiving_layers,
        losses=[c.describe() for c in losses],
        metric_names=metric_names(losses, cfg.metrics, validation is not None),
        optimizer=f"{optimizer}, learning rate {cfg.learning_rate:g} ({cfg.schedule})"
                  + (f"; {groups}" if groups else ""),
        device=placement.describe(), feature_cache=trainables.cache.reason,
        data=data.describe(), notes=notes, xla=jit.describe(),
        stages=[plan.to_dict() for plan in stages] if schedule else [])
    return RunSetup(info, train, validation, losses, columns, stages, stage_document,
                    placement, model, mapping, policy, jit_compile=jit.enabled)


def _groups_text(multipliers: list) -> str:
    """E.g. "2 learning-rate groups: x1 (4 weights), x0.5 (2 weights)"; "" when every
    weight that trains keeps x1."""
    groups = plan_groups(multipliers)
    if all(g.multiplier == 1.0 for g in groups):
        return ""
    parts = [f"x{g.multiplier:g} ({len(g.indices)} weight{'s' * (len(g.indices) != 1)})"
             for g in groups]
    return f"{len(groups)} learning-rate group{'s' * (len(groups) != 1)}: {', '.join(parts)}"


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
