"""The compiled training and evaluation steps.

One training step runs the forward pass in training mode, the loss, the gradients with
respect to the variables that receive gradient (no others: weight decay must not move
them), the L2 norm of those gradients per layer, and the optimizer update. It takes the
data iterator (the batch is fetched inside the compiled function, as `model.fit` does)
and returns one vector `[loss, batch size, norm_1, ..., norm_k]` (one host transfer per
step). A step whose loss or
gradients are not finite applies nothing (single device), so the model keeps the weights
of the last good step.

With `StepSpec.update_sizes` the vector also holds, per reported layer, the *update size*
`|w_after - w_before| / |w_before|` (L2 norms over the layer's weights that receive
gradient): the values are copied before the optimizer runs and compared after it, so it
is what every optimizer group applied, multipliers and weight decay included, at the
cost of one copy of those weights per step and no extra forward pass. A layer whose
weights are all zero before the step reports 0; a step not applied (not finite)
reports 0 everywhere.

Under a `tf.distribute` strategy the steps are `replica_step`'s, built from the same
parts.

The steps are traced with `autograph=False`: their own control flow is Python over lists
(tensor-dependent branches use `tf.cond` explicitly), and AutoGraph never converts code
inside Keras (layers, models, losses, optimizers), exactly as under `model.fit`, so the
graph is the same. Converting this module's functions cost ~0.45 s of the first run's
trace on the demo CNN (0.9 s instead of 1.3 s to the first step), all of it Python
holding the GIL against the GUI thread's plot painting.

Private Keras attributes read here (by `seed_run`): `model._flatten_layers(...)`
(every layer inside the model, nested ones included) and `layer._seed_generators` (the
random-seed generators a Dropout, noise or augmentation layer owns). Graph attributes are
read in `core/graph/functional.py` alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial


@dataclass
class StepSpec:
    """What the steps need.

    Attributes:
        forward: `(inputs, training) -> list of float32 outputs`.
        variables: the variables that receive gradient, in a fixed order.
        groups: per reported layer, the indices into `variables` of its weights.
        losses: per output, a callable `(y_true, y_pred) -> per-sample loss`.
        metrics: per output, a list of Keras metrics (maybe empty).
        optimizer: built on `variables` (with `update_groups`: the first group's, whose
            loss scale the step uses).
        regularization: `() -> list of scalar losses` (the model's `losses`).
        strategy: a distribute strategy, or None for one device.
        loss_scale: the optimizer is a LossScaleOptimizer.
        jit_compile: compile the step's computation with XLA (one device; see `xla.py`).
        missing: filled at trace time with indices of variables that got no gradient.
        notes: filled when XLA could not compile the step and it ran without.
        update_groups: `OptimizerGroup`s (an optimizer and the indices into `variables`
            it updates); None: `optimizer` updates every variable.
        update_sizes: also return each group's update size (module docstring).
    """

    forward: object
    variables: list
    groups: list
    losses: list
    metrics: list
    optimizer: object
    regularization: object = None
    strategy: object = None
    loss_scale: bool = False
    jit_compile: bool = False
    missing: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    update_groups: list | None = None
    update_sizes: bool = False


def _square_norm(grad):
    import tensorflow as tf

    if grad is None:
        return tf.constant(0.0)
    if isinstance(grad, tf.IndexedSlices):  # sum duplicate rows first (embeddings)
        unique, positions = tf.unique(grad.indices)
        grad = tf.math.unsorted_segment_sum(grad.values, positions, tf.shape(unique)[0])
    return tf.reduce_sum(tf.square(tf.cast(grad, tf.float32)))


def group_norms(spec: StepSpec, grads):
    """The L2 norm of `grads` (None: no gradient) per reported group of variables."""
    import tensorflow as tf

    squares = [_square_norm(g) for g in grads]
    if not spec.groups:
        return tf.zeros((0,), tf.float32)
    return tf.stack([tf.sqrt(tf.add_n([squares[i] for i in group])) for group in spec.groups])


def weight_copies(spec: StepSpec):
    """The variables' values before the step (None without `update_sizes`)."""
    import tensorflow as tf

    if not spec.update_sizes:
        return None
    return [tf.identity(tf.cast(v, tf.float32)) for v in spec.variables]


def update_sizes(spec: StepSpec, before):
    """Per group `|after - before| / |before|` (empty without `update_sizes`)."""
    import tensorflow as tf

    if before is None or not spec.groups:
        return tf.zeros((0,), tf.float32)
    moved = [tf.reduce_sum(tf.square(tf.cast(v, tf.float32) - old))
             for v, old in zip(spec.variables, before, strict=True)]
    sizes = [tf.reduce_sum(tf.square(old)) for old in before]
    return tf.stack([tf.math.divide_no_nan(tf.sqrt(tf.add_n([moved[i] for i in group])),
                                           tf.sqrt(tf.add_n([sizes[i] for i in group])))
                     for group in spec.groups])


def _loss(spec: StepSpec, y, outputs, global_batch=None, regularize: bool = True):
    """Mean loss over the batch, or this replica's share of the global batch's mean
    (`global_batch`: the number of samples over all replicas; 1 gives the sum)."""
    import tensorflow as tf

    total = tf.constant(0.0)
    for loss_fn, target, output in zip(spec.losses, y, outputs, strict=True):
        per_sample = tf.cast(loss_fn(target, output), tf.float32)
        rank = per_sample.shape.rank or 0
        if rank > 1:
            per_sample = tf.reduce_mean(per_sample, axis=list(range(1, rank)))
        if global_batch is None:
            total += tf.reduce_mean(per_sample)
        else:
            total += tf.reduce_sum(per_sample) / tf.cast(global_batch, tf.float32)
    extra = spec.regularization() if spec.regularization and regularize else []
    if extra:
        reg = tf.add_n([tf.cast(r, tf.float32) for r in extra])
        total += reg if global_batch is None else tf.nn.scale_regularization_loss(reg)
    return total


def update_metrics(spec: StepSpec, y, outputs) -> None:
    """Adds the batch to every output's metrics."""
    for group, target, output in zip(spec.metrics, y, outputs, strict=True):
        for metric in group:
            metric.update_state(target, output)


def compute_gradients(spec: StepSpec, x, y, global_batch=None):
    """(loss, gradients of `spec.variables` (None where none flows; scaled under loss
    scaling), outputs) of a forward pass in training mode; `global_batch` as `_loss`."""
    import tensorflow as tf

    with tf.GradientTape() as tape:
        outputs = spec.forward(list(x), True)
        loss = _loss(spec, y, outputs, global_batch)
        scaled = spec.optimizer.scale_loss(loss) if spec.loss_scale else loss
    grads = tape.gradient(scaled, spec.variables)
    if not spec.missing:
        spec.missing.extend(i for i, g in enumerate(grads) if g is None)
    return loss, grads, outputs


def apply_gradients(spec: StepSpec, grads) -> None:
    """Each optimizer group applies its variables' gradients (None: left out)."""
    groups = spec.update_groups
    if groups is None:
        groups = [(spec.optimizer, range(len(spec.variables)))]
    else:
        groups = [(group.optimizer, group.indices) for group in groups]
    for optimizer, indices in groups:
        pairs = [(grads[i], spec.variables[i]) for i in indices if grads[i] is not None]
        if pairs:
            optimizer.apply([g for g, _ in pairs], [v for _, v in pairs])


def unscaled(spec: StepSpec, grads):
    """`grads` with the loss scale divided out (as they are without loss scaling)."""
    if not spec.loss_scale:
        return grads
    scale = spec.optimizer.scale_loss(1.0)
    return [None if g is None else g / scale for g in grads]


def batch_size(y):
    """The number of samples in the batch (of this replica), as float32."""
    import tensorflow as tf

    return tf.cast(tf.shape(y[0])[0], tf.float32)


def _on_iterator(spec: StepSpec, on_batch):
    """`on_batch(x, y)` as a compiled `(iterator) -> result`.

    Without XLA the batch is fetched inside the `tf.function`. With XLA the batch is
    fetched outside the XLA-compiled function (as `model.fit` does: the iterator is not
    XLA-compilable). The first batch is fetched eagerly and given to the XLA function: if
    XLA cannot compile it, nothing of it ran, a note is added to `spec.notes` and this and
    every later batch run without XLA. Later steps are one `tf.function` that fetches the
    batch and calls the compiled function (as fit's `one_step_on_iterator` does).
    """
    import tensorflow as tf

    if not spec.jit_compile:
        @tf.function(autograph=False)
        def step(iterator):
            return on_batch(*next(iterator))
        return step
    from freezestudio.core.training.xla import is_xla_compile_failure, xla_failure_reason

    compiled = tf.function(on_batch, autograph=False, jit_compile=True, reduce_retracing=True)
    state = {}

    def step(iterator):
        if "fused" in state:  # one graph call per step: the fetch, then the XLA cluster
            return state["fused"](iterator)
        x, y = next(iterator)
        try:
            result = compiled(x, y)
        except Exception as exc:
            if not is_xla_compile_failure(exc):
                raise
            spec.notes.append("XLA could not compile the step, it ran without XLA: "
                              f"{xla_failure_reason(exc)}")
            plain = tf.function(on_batch, autograph=False)
            result = plain(x, y)
            state["fused"] = tf.function(lambda it: plain(*next(it)), autograph=False)
            return result
        state["fused"] = tf.function(lambda it: compiled(*next(it)), autograph=False)
        return result
    return step


def make_train_step(spec: StepSpec):
    """A `tf.function (iterator) -> [loss, batch size, norms..., update sizes...]` on one
    device (update sizes only with `spec.update_sizes`; under a strategy:
    `replica_step.make_distributed_train_step`)."""
    import tensorflow as tf

    def on_batch(x, y):
        loss, grads, outputs = compute_gradients(spec, x, y)
        norms = group_norms(spec, unscaled(spec, grads))
        finite = tf.math.is_finite(loss) & tf.math.is_finite(tf.reduce_sum(norms))
        before = weight_copies(spec)

        def apply():
            apply_gradients(spec, grads)
            return tf.constant(True)

        if spec.loss_scale:
            apply_gradients(spec, grads)  # the loss-scale optimizer skips non-finite steps
        else:
            tf.cond(finite, apply, lambda: tf.constant(False))
        update_metrics(spec, y, outputs)
        return tf.concat([tf.stack([loss, batch_size(y)]), norms,
                          update_sizes(spec, before)], axis=0)
    return _on_iterator(spec, on_batch)


def evaluate_batch(spec: StepSpec, x, y):
    """`[loss sum over the batch, batch size]` in inference mode, the metrics updated."""
    import tensorflow as tf

    outputs = spec.forward(list(x), False)
    batch = tf.cast(tf.shape(x[0])[0], tf.float32)
    loss = _loss(spec, y, outputs, global_batch=1.0, regularize=False)
    extra = spec.regularization() if spec.regularization else []
    if extra:  # once per sample, as the training loss counts it
        loss += tf.add_n([tf.cast(r, tf.float32) for r in extra]) * batch
    update_metrics(spec, y, outputs)
    return tf.stack([loss, batch])


def make_eval_step(spec: StepSpec):
    """A `tf.function (iterator) -> [loss sum over the batch, batch size]` in inference
    mode, on one device (under a strategy: `replica_step.make_distributed_eval_step`)."""
    return _on_iterator(spec, partial(evaluate_batch, spec))


def seed_run(seed: int, model=None) -> None:
    """Makes a run repeatable: Python, NumPy and TensorFlow seeds, and the state of every
    Keras random-seed generator in `model` (Dropout, noise and augmentation layers).

    The generators got a random state when the model was loaded, before any seed was set,
    so without this two runs with the same seed drew different dropout masks.
    """
    import keras
    import numpy as np

    keras.utils.set_random_seed(seed)
    if model is None:
        return
    generators = [g for layer in model._flatten_layers(include_self=True, recursive=True)
                  for g in getattr(layer, "_seed_generators", [])]
    for index, generator in enumerate(generators):
        state = generator.state
        derived = (seed * 1_000_003 + index) % (2**31 - 1)
        state.assign(np.array([derived, 0], dtype=state.dtype))


def make_optimizer(config, total_steps: int, multiplier: float = 1.0, first_step: int = 0):
    """A fresh Keras optimizer for a run (with the learning-rate schedule), its learning
    rate (every value of its schedule) times `multiplier`. An optimizer created for
    variables that start training at the run's step `first_step` (a schedule stage)
    counts its own `iterations` from 0 and reads the schedule at `first_step` on."""
    import keras

    lr = config.learning_rate * multiplier
    if config.schedule == "cosine":
        lr = keras.optimizers.schedules.CosineDecay(lr, decay_steps=max(1, total_steps))
    elif config.schedule == "step":
        lr = keras.optimizers.schedules.ExponentialDecay(
            lr, decay_steps=max(1, total_steps // 3), decay_rate=0.1, staircase=True)
    if first_step and config.schedule != "constant":
        lr = _offset_schedule(lr, first_step)
    if config.optimizer == "adamw":
        return keras.optimizers.AdamW(lr, weight_decay=config.weight_decay)
    if config.optimizer == "sgd":
        return keras.optimizers.SGD(lr, momentum=config.momentum)
    if config.optimizer == "rmsprop":
        return keras.optimizers.RMSprop(lr)
    return keras.optimizers.Adam(lr)


def _offset_schedule(schedule, offset: int):
    """`schedule` read `offset` steps later (not serialised: saves keep the run's base
    optimizer)."""
    import keras

    class OffsetSchedule(keras.optimizers.schedules.LearningRateSchedule):
        def __call__(self, step):
            return schedule(step + offset)

        def get_config(self):
            return {"schedule": keras.optimizers.schedules.serialize(schedule),
                    "offset": offset}

    return OffsetSchedule()


def reset_metrics(metrics) -> None:
    """`metrics`: per output, a list of Keras metrics (as `StepSpec.metrics`)."""
    for group in metrics:
        for metric in group:
            metric.reset_state()


def metric_results(metrics) -> dict:
    return {m.name: float(m.result()) for group in metrics for m in group}


def metric_names(losses, metrics: bool, validation: bool) -> list:
    if not metrics:
        return []
    names = []
    for choice in losses:
        prefix = f"{choice.output}_" if len(losses) > 1 else ""
        names.extend(metric.name for metric in choice.metrics(prefix))
    return names + ([f"val_{n}" for n in names] if validation else [])
