"""The compiled training and evaluation steps under a `tf.distribute` strategy.

Each replica computes its share of the loss (scaled to the true global batch: a last
batch may split unevenly over the replicas), the gradients are all-reduced before their
norms are taken, and the optimizer is given the replica's own gradients (it all-reduces
them itself). A replica whose share of a last batch is empty (fewer samples than
replicas) runs no forward pass: TensorFlow's CPU convolution returns an empty batch's
input unchanged, so the next layer fails (in Keras's own `fit` too); it adds a zero loss
and zero gradients instead, and no metric or BatchNorm update. The vectors returned are
those of `step.make_train_step` and `step.make_eval_step`.
"""

from __future__ import annotations

from functools import partial

from freezestudio.core.training.step import (
    StepSpec,
    apply_gradients,
    batch_size,
    compute_gradients,
    evaluate_batch,
    group_norms,
    unscaled,
    update_metrics,
    update_sizes,
    weight_copies,
)


def _when_samples(y, compute, nothing):
    """`compute()` if this replica's share of the batch has samples, else `nothing()`."""
    import tensorflow as tf

    return tf.cond(tf.shape(y[0])[0] > 0, compute, nothing)


def _share_gradients(spec: StepSpec, x, y, global_batch):
    """This replica's loss (its share of the global mean) and gradients, its metrics
    updated; an empty share gives loss 0 and zero gradients."""
    import tensorflow as tf

    made: list = []  # (index, gradient) of those the model has, known once traced

    def compute():
        loss, grads, outputs = compute_gradients(spec, x, y, global_batch)
        update_metrics(spec, y, outputs)
        made.extend((i, g) for i, g in enumerate(grads) if g is not None)
        return [loss] + [g for _, g in made]

    def nothing():
        return [tf.constant(0.0)] + [_zero_like(g, spec.variables[i]) for i, g in made]

    loss, *present = _when_samples(y, compute, nothing)
    grads = [None] * len(spec.variables)
    for (i, _), grad in zip(made, present, strict=True):
        grads[i] = grad
    return loss, grads


def _zero_like(grad, variable):
    """A zero gradient of `variable` in `grad`'s form (a sparse one stays sparse)."""
    import tensorflow as tf

    if not isinstance(grad, tf.IndexedSlices):
        return tf.zeros_like(variable)
    shape = None if grad.dense_shape is None else \
        tf.constant(variable.shape, grad.dense_shape.dtype)
    return tf.IndexedSlices(tf.zeros([0, *grad.values.shape[1:]], grad.values.dtype),
                            tf.zeros([0], grad.indices.dtype), shape)


def make_distributed_train_step(spec: StepSpec):
    """`step.make_train_step`'s function for `spec.strategy`: per-layer norms of the
    all-reduced gradients, the loss summed over the replicas' shares."""
    import tensorflow as tf

    strategy = spec.strategy

    def replica_step(x, y):
        context = tf.distribute.get_replica_context()
        global_batch = context.all_reduce(tf.distribute.ReduceOp.SUM, batch_size(y))
        loss, grads = _share_gradients(spec, x, y, global_batch)
        present = [g for g in unscaled(spec, grads) if g is not None]
        reduced = iter(context.all_reduce(tf.distribute.ReduceOp.SUM, present)) if present \
            else iter(())
        norms = group_norms(spec, [None if g is None else next(reduced) for g in
                                   unscaled(spec, grads)])
        before = weight_copies(spec)
        apply_gradients(spec, grads)
        return tf.stack([loss, batch_size(y)]), tf.concat([norms, update_sizes(spec, before)],
                                                          axis=0)

    @tf.function(autograph=False)
    def distributed_step(iterator):
        head, norms = strategy.run(replica_step, args=next(iterator))
        head = strategy.reduce(tf.distribute.ReduceOp.SUM, head, axis=None)
        norms = strategy.reduce(tf.distribute.ReduceOp.MEAN, norms, axis=None)
        return tf.concat([head, norms], axis=0)
    return distributed_step


def make_distributed_eval_step(spec: StepSpec):
    """`step.make_eval_step`'s function for `spec.strategy` (sums over the replicas)."""
    import tensorflow as tf

    strategy = spec.strategy

    def share_eval(x, y):
        return _when_samples(y, partial(evaluate_batch, spec, x, y), lambda: tf.zeros([2]))

    @tf.function(autograph=False)
    def distributed_eval(iterator):
        per_replica = strategy.run(share_eval, args=next(iterator))
        return strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)
    return distributed_eval
