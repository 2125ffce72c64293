"""What one stage of a run trains with: cached features, the optimizers, the compiled
steps and the data iterators (`build_stage`).

The first stage builds everything; a later stage (a schedule's) builds new step
functions over its own set of variables (the trainable set is fixed when a step is
traced) and new optimizer groups that keep the state of variables already training
(`lr_groups.carry_optimizers`). Its features and data iterators are kept when its
feature-cache decision is the same as the stage before (so the shuffle order goes on),
recomputed when the cached prefix changed, and dropped when nothing can be cached any
more (a stage unfroze part of the prefix).
"""

from __future__ import annotations

from dataclasses import dataclass

from freezestudio.core.data import Split, TrainingData
from freezestudio.core.model.signature import forward_fn
from freezestudio.core.training.feature_cache import compute_features
from freezestudio.core.training.lr_groups import (
    OptimizerGroup,
    build_optimizers,
    carry_optimizers,
    plan_groups,
)
from freezestudio.core.training.replica_step import (
    make_distributed_eval_step,
    make_distributed_train_step,
)
from freezestudio.core.training.step import (
    StepSpec,
    make_eval_step,
    make_optimizer,
    make_train_step,
)


@dataclass
class BuiltStage:
    """Attributes:
        plan: the StagePlan.
        spec, train_step, eval_step: the step specification and compiled functions.
        batches, val_batches: the data iterators (val_batches None without validation).
        train, validation: the splits the iterators read (features when cached).
    """

    plan: object
    spec: StepSpec
    train_step: object
    eval_step: object
    batches: object
    val_batches: object
    train: Split
    validation: Split | None


def _same_cache(a, b) -> bool:
    return a.enabled == b.enabled and (not a.enabled or a.frontier == b.frontier)


def build_stage(setup, config, data: TrainingData, document, plan,
                previous: BuiltStage | None = None) -> BuiltStage:
    """Builds stage `plan` of run `setup` (see the module docstring).

    Args:
        previous: the stage that ran before (None for the first).
    """
    cache = plan.trainables.cache
    keep_data = previous is not None and _same_cache(previous.plan.trainables.cache, cache)
    with setup.placement.scope():
        if keep_data:
            train, validation = previous.train, previous.validation
        elif cache.enabled:
            train, validation = _cached(cache, config, data, setup)
        else:
            train, validation = setup.train, setup.validation
        forward_model = cache.head if cache.enabled else setup.model
        spec = _step_spec(setup, config, document, plan, forward_model, previous)
        train_step, eval_step = (
            (make_distributed_train_step(spec), make_distributed_eval_step(spec))
            if spec.strategy is not None else (make_train_step(spec), make_eval_step(spec)))
    if keep_data:
        batches, val_batches = previous.batches, previous.val_batches
    else:
        pipeline = TrainingData(data.source, train,
                                image=None if cache.enabled else data.image)
        batches = iter(_distribute(setup, pipeline.dataset(
            train, config.batch_size, config.shuffle, config.seed, repeat=True)))
        val_batches = None if validation is None else iter(_distribute(
            setup, pipeline.dataset(validation, config.batch_size, repeat=True)))
    return BuiltStage(plan, spec, train_step, eval_step, batches, val_batches, train,
                      validation)


def _step_spec(setup, config, document, plan, forward_model, previous) -> StepSpec:
    metrics = []
    for choice in setup.losses:
        prefix = f"{choice.output}_" if len(setup.losses) > 1 else ""
        metrics.append(choice.metrics(prefix) if config.metrics else [])
    trainables = plan.trainables
    groups = plan_groups(trainables.multipliers, plan.cohorts) or \
        [OptimizerGroup(1.0, plan.index, [])]
    starts = {stage.index: (stage.from_epoch - 1) * setup.info.steps_per_epoch
              for stage in setup.stages}

    def make(group):
        return make_optimizer(config, setup.info.total_steps, group.multiplier,
                              first_step=starts[group.cohort])

    loss_scale = setup.policy == "mixed_float16"
    if previous is None:
        build_optimizers(groups, trainables.variables, make, loss_scale=loss_scale)
    else:
        carry_optimizers(groups, trainables.variables, previous.spec.update_groups,
                         previous.spec.variables, make)
    regularization = (lambda: list(forward_model.losses)) if forward_model is not None \
        else None
    return StepSpec(forward_fn(document, forward_model), trainables.variables,
                    trainables.norm_groups, [c.build() for c in setup.losses], metrics,
                    groups[0].optimizer, regularization, setup.placement.strategy,
                    loss_scale, setup.jit_compile, update_groups=groups,
                    update_sizes=config.update_sizes)


def _cached(cache, config, data: TrainingData, setup):
    """The splits with the prefix's features in place of the inputs (under a strategy
    computed over its replicas)."""
    train, validation = setup.train, setup.validation
    source = TrainingData(data.source, train, image=data.image)
    features, val_features = compute_features(cache, source, [train, validation],
                                              max(config.batch_size, 64), setup.placement)
    return Split(features, train.y), (None if validation is None
                                      else Split(val_features, validation.y))


def _distribute(setup, dataset):
    return setup.placement.distribute(dataset)
