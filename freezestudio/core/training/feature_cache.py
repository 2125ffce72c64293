"""Feature caching: compute a frozen, cut-off prefix of the model once, train the rest.

A layer of the top-level graph is *static* when nothing in it can change during training
and its output does not depend on the training mode: none of its weights receives
gradient, it holds no BatchNormalization in training mode (a trainable BN normalises with
batch statistics), no layer that behaves differently while training (dropout, noise,
augmentation, anything else taking a `training` argument), no mask source and no activity
regularizer. A call is static when its layer is and all its inputs are. The *frontier* is
the set of static tensors that feed a non-static call (or are model outputs); the model
then splits exactly into `prefix` (inputs -> frontier) and `head` (frontier -> outputs),
which reuses the same layer objects and variables. Each epoch trains only the head on the
cached frontier features: exact when the prefix is static, and much faster.

With `mode="on"` a prefix that is merely gradient-free (e.g. trainable BatchNorm or dropout
upstream of a stop-gradient) is cached too, evaluated in inference mode; the plan says so.

Under a distribute strategy the model is the document's replica (`devices.replicate_model`):
its layers are judged as the document's layers of the same name, and the prefix and head
are cut from the replica, so the head trains the replica's variables (the strategy's). The
caching pass is then split over the replicas of every worker, and every worker ends with
the features of every sample (`compute_features`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from freezestudio.core.errors import UserError
from freezestudio.core.graph.functional import (
    execution_order,
    graph_of,
    inputs_struct,
    producer,
    replay,
)

AUTO_LIMIT_BYTES = 2 * 1024**3
_RNN = {"LSTM", "GRU", "SimpleRNN", "RNN", "Bidirectional", "ConvLSTM1D", "ConvLSTM2D",
        "ConvLSTM3D"}
_BATCH_NORM = {"BatchNormalization", "SyncBatchNormalization"}
_NOISE = {"GaussianNoise", "GaussianDropout", "AlphaDropout"}


@dataclass
class CachePlan:
    """Attributes:
        enabled: caching will be used.
        exact: the cached prefix behaves the same as in training mode.
        reason: for the user, why (not) and where.
        prefix, head: the two Keras models (None when not enabled).
        frontier: names of the layers whose outputs are cached.
    """

    enabled: bool
    exact: bool
    reason: str
    prefix: object = None
    head: object = None
    frontier: list = field(default_factory=list)
    prefix_layers: int = 0


def _leaf_layers(layer):
    inner = getattr(layer, "layers", None)
    if graph_of(layer) is not None and inner is not None:
        for sub in inner:
            yield from _leaf_layers(sub)
    else:
        yield layer


def _training_dependent(layer) -> str | None:
    """Why this (leaf) layer's output may differ between training and inference.

    Built-in Keras layers are judged by what they are (dropout and noise with a non-zero
    rate, random augmentation, trainable BatchNorm, RNNs and attention with dropout); a
    Keras `Dense` takes a `training` argument but ignores it. A custom layer whose `call`
    takes `training` is assumed to use it.
    """
    name = type(layer).__name__
    if name in _BATCH_NORM:
        return f"BatchNormalization '{layer.name}' is trainable" if layer.trainable else None
    if getattr(layer, "activity_regularizer", None) is not None:
        return f"'{layer.name}' has an activity regularizer"
    if getattr(layer, "mask_zero", False) or name == "Masking":
        return f"'{layer.name}' produces a mask"
    inner = getattr(layer, "layer", None) or getattr(layer, "forward_layer", None)
    if inner is not None and inner is not layer:  # TimeDistributed, Bidirectional
        return _training_dependent(inner) or (_training_dependent(layer.backward_layer)
                                              if getattr(layer, "backward_layer", None)
                                              else None)
    if not getattr(layer, "_call_has_training_arg", False):
        return None
    why = f"'{layer.name}' ({name}) behaves differently while training"
    if not type(layer).__module__.startswith("keras."):
        return why
    if name.startswith("Random") or name in _NOISE:
        return why if name.startswith("Random") or _rate(layer) else None
    if name.endswith("Dropout") or name in _RNN or name == "MultiHeadAttention":
        return why if _rate(layer) else None
    return None


def _rate(layer) -> float:
    rates = [getattr(layer, a, 0) or 0 for a in ("rate", "dropout", "recurrent_dropout",
                                                 "stddev", "_dropout")]
    cell = getattr(layer, "cell", None)
    if cell is not None:
        rates += [getattr(cell, a, 0) or 0 for a in ("dropout", "recurrent_dropout")]
    return float(max(rates))


def _static_problem(document, layer, layer_nodes: dict) -> tuple[str | None, str | None]:
    """(blocking reason, inexact reason) for one top-level layer."""
    node = layer_nodes.get(id(layer))
    if node is not None and document.receives_gradient(node) not in (False,):
        return f"'{node.path}' receives gradient", None
    for leaf in _leaf_layers(layer):
        why = _training_dependent(leaf)
        if why:
            return None, why
    return None, None


def plan_cache(document, model, mode: str = "auto") -> CachePlan:
    """Decides whether and where to cache features of `model` (the document's model).

    Args:
        mode: "auto" (only when exact), "on" (also when only gradient-free), "off".

    Raises:
        UserError: `mode="on"` but no prefix can be cached.
    """
    if mode == "off":
        return CachePlan(False, False, "feature caching off")
    plan = _find_frontier(document, model, exact_only=(mode == "auto"))
    if mode == "on" and not plan.enabled:
        raise UserError(f"--cache-features on: {plan.reason}")
    return plan


def _find_frontier(document, model, exact_only: bool) -> CachePlan:
    import keras

    graph = graph_of(model)
    if graph is None:
        return CachePlan(False, False, "no layer graph (subclassed model or SavedModel)")
    layer_nodes = {id(n.layer): n for n in document.root.walk() if n.layer is not None}
    judged = _judged_layers(document.model, model)
    static, inexact, reasons = set(), [], []
    for tensor in graph.inputs:
        static.add(id(tensor))
    consumers_nonstatic, prefix_nodes = set(), set()
    for node in execution_order(graph):
        inputs_static = all(id(t) in static for t in node.input_tensors)
        layer = judged.get(id(node.operation), node.operation)
        block, soft = _static_problem(document, layer, layer_nodes)
        if soft and exact_only:
            block = soft
        if inputs_static and not block:
            static.update(id(t) for t in node.outputs)
            prefix_nodes.add(id(node))
            if soft:
                inexact.append(soft)
        else:
            if inputs_static and block:
                reasons.append(block)
            consumers_nonstatic.update(id(t) for t in node.input_tensors)
    frontier, seen = [], set()
    for node in execution_order(graph, include_inputs=True):
        for tensor in list(node.outputs) + (list(graph.inputs) if node.is_input else []):
            if id(tensor) in static and id(tensor) in consumers_nonstatic and \
                    id(tensor) not in seen:
                seen.add(id(tensor))
                frontier.append(tensor)
    static_outputs = [t for t in graph.outputs if id(t) in static]
    prefix_calls = len(prefix_nodes)
    if prefix_calls == 0 or static_outputs or all(id(t) in {id(i) for i in graph.inputs}
                                                  for t in frontier):
        why = reasons[0] if reasons else "nothing upstream is frozen"
        if static_outputs:
            why = "no output depends on a weight that receives gradient"
        return CachePlan(False, False, f"no cacheable prefix ({why})")
    names = [producer(t).name for t in frontier]
    prefix = keras.Model(graph.inputs, frontier, name="freezestudio_prefix")
    head = _head_model(graph, frontier, prefix_nodes)
    exact = not inexact
    reason = f"caching the outputs of {', '.join(names)} ({prefix_calls} layer call(s) upstream)"
    if not exact:
        reason += f"; evaluated in inference mode although {inexact[0]}"
    return CachePlan(True, exact, reason, prefix, head, names, prefix_calls)


def _judged_layers(original, model) -> dict:
    """`id(layer of model) -> the document's layer it stands for`: empty when `model` is
    the document's own; for a replica, its top-level layers matched by name."""
    if model is original:
        return {}
    layers = {layer.name: layer for layer in getattr(original, "layers", [])}
    judged = {id(layer): layers.get(layer.name) for layer in model.layers}
    if None in judged.values() or len(layers) != len(judged):
        raise UserError("feature caching: the replicated model's layers do not match the "
                        "document's; train with --cache-features off")
    return judged


def _head_model(graph, frontier: list, prefix_nodes: set):
    """The graph from the frontier to the outputs, re-run on fresh Inputs with the same
    layer objects. Keras's own `Model(frontier, outputs)` clones the graph's nodes instead,
    and when a frontier tensor is one of the model's Inputs (an input that feeds a layer
    being trained) that broke the model itself: saving it after the run failed with
    "could not find node key"."""
    import keras

    inputs = [keras.Input(batch_shape=t.shape, dtype=t.dtype,
                          name=f"{producer(t).name}_features")
              for t in frontier]
    tensors = {id(old): new for old, new in zip(frontier, inputs, strict=True)}
    return keras.Model(inputs, replay(graph, tensors, skip=prefix_nodes),
                       name="freezestudio_head")


def feature_bytes(plan: CachePlan, samples: int) -> int:
    return sum(int(np.prod([d or 1 for d in t.shape[1:]])) * 4 * samples
               for t in plan.prefix.outputs)


def compute_features(plan: CachePlan, data, splits: list, batch_size: int,
                     placement=None) -> list:
    """Runs the prefix (inference mode) once over each split of `splits` (`Split`s of
    `data`, a `TrainingData`; None stays None); returns, per split, one float32 array per
    frontier tensor.

    The caching pass is one `tf.function` (AutoGraph off) traced once for batches of any
    size, so the last, partial batch and the validation split reuse the training split's
    trace. Arrays are fed slice by slice with no tf.data pipeline (an image folder is
    decoded through it), and every batch's features are written into arrays allocated
    once: no concatenation at the end, whose copy doubled the peak memory.

    Args:
        batch_size: the batch of one device.
        placement: a distributed `devices.Placement` splits the pass over its replicas
            (`_over_replicas`); else None.
    """
    import keras
    import tensorflow as tf

    struct = inputs_struct(plan.prefix)

    def features(*x):
        packed = keras.tree.pack_sequence_as(struct, list(x))
        return [tf.cast(t, tf.float32) for t in
                keras.tree.flatten(plan.prefix(packed, training=False))]

    function = tf.function(features, autograph=False)
    distributed = placement is not None and placement.distributed
    if distributed:  # one function for every split, as `function`
        batch = batch_size * placement.strategy.num_replicas_in_sync
        replicated = _replicated(features, placement.strategy, batch)
    results = []
    for split in splits:
        out = None if split is None else _Features(len(split))
        if split is not None and distributed:
            _over_replicas(replicated, function, data, split, batch_size, placement, out)
        elif split is not None:
            _on_one_device(function, data, split, batch_size, out)
        results.append(None if out is None else out.arrays)
    return results


class _Features:
    """One float32 array of `samples` rows per frontier tensor, allocated at the first
    batch (no concatenation at the end)."""

    def __init__(self, samples: int):
        self.samples, self.arrays = samples, None

    def write(self, rows, values) -> None:
        if self.arrays is None:
            self.arrays = [np.empty((self.samples, *v.shape[1:]), np.float32) for v in values]
        for array, value in zip(self.arrays, values, strict=True):
            array[rows] = value


def _on_one_device(function, data, split, batch_size: int, out: _Features,
                   offset: int = 0) -> None:
    specs, batches = data.input_batches(split, batch_size)
    step = function.get_concrete_function(*specs)  # the same trace for equal specs
    start = offset
    for x in batches:
        values = [t.numpy() for t in step(*x)]
        out.write(slice(start, start + len(values[0])), values)
        start += len(values[0])


def _replicated(features, strategy, batch: int):
    """A function `(iterator) -> features` of one global batch of `batch` samples, on
    every replica: each replica computes its share's features and scatters them to its samples'
    positions in the batch (the labels are the samples' indices: the order of the
    replicas does not matter), and one all-reduce (a sum with zeros elsewhere: exact)
    gives every replica of every worker the whole batch."""
    import tensorflow as tf

    def replica(x, y):
        at = tf.expand_dims(y[0] % batch, 1)
        placed = [tf.scatter_nd(at, t, tf.concat([[batch], tf.shape(t)[1:]], 0))
                  for t in features(*x)]
        return tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM,
                                                              placed)

    @tf.function(autograph=False)
    def step(iterator):
        summed = strategy.run(replica, args=next(iterator))
        return [strategy.experimental_local_results(t)[0] for t in summed]
    return step


def _over_replicas(replicated, function, data, split, batch_size: int, placement,
                   out: _Features) -> None:
    """The caching pass under a strategy: the split's whole global batches of
    `batch_size` x replicas, in order, distributed as training batches are
    (`placement.distribute`), through `replicated` (`_replicated`). The rest (fewer
    samples than a global batch: a share could be empty, and a convolution on an empty
    batch fails) runs on one device (`function`) in every worker."""
    from freezestudio.core.data import Split

    batch = batch_size * placement.strategy.num_replicas_in_sync
    whole = len(split) // batch * batch
    if whole:
        indexed = Split([a[:whole] for a in split.x], [np.arange(whole, dtype=np.int32)])
        iterator = iter(placement.distribute(data.dataset(indexed, batch, repeat=True)))
        for start in range(0, whole, batch):
            out.write(slice(start, start + batch), [t.numpy() for t in replicated(iterator)])
    if whole < len(split):
        rest = Split([a[whole:] for a in split.x], [y[whole:] for y in split.y])
        _on_one_device(function, data, rest, batch_size, out, offset=whole)
