"""Keras layer graphs: the one module that reads Keras's private graph attributes.

Keras 3 keeps a model's layer graph in private attributes: a Functional model's call nodes
by depth (`_nodes_by_depth`) and the structures it was built on (`_inputs_struct`,
`_outputs_struct`), a Sequential's inner Functional (`_functional`), a layer's calls
(`_inbound_nodes`) and, on every symbolic tensor, the call that produced it
(`_keras_history`). Every other FreezeStudio module reads graphs through the small
primitives below, so a Keras upgrade that moves these attributes is fixed here alone.

Vocabulary:

- A *graph* is a Functional model: a Functional model itself, or a Sequential's inner
  Functional (`graph_of`).
- A *call* is one `keras.src.ops.node.Node`: one call of a layer (its `operation`) on
  symbolic tensors, with its public `arguments`, `input_tensors`, `outputs` and
  `is_input`. A layer called twice (a shared layer) has two calls; an `Input` is a call
  of its `InputLayer` with no inputs (`is_input`).
- *Execution order* is the order in which Keras runs a graph: calls farthest from the
  outputs first (`Functional` orders its calls by depth, the distance to the outputs).
  It depends on the graph's structure only, so it is the same after a save and reload.

Example: re-running a graph with the same layer objects, with an identity layer after
every output of every call of the layer named "dense" (the layers, and so the weights,
are shared with `model`):

```python
graph = graph_of(model)

def after(call, index, tensor):
    if call.operation.name != "dense":
        return tensor
    return keras.layers.Identity()(tensor)

outputs = replay(graph, {id(t): t for t in graph.inputs}, after=after)
rebuilt = keras.Model(inputs_struct(graph), outputs, name=model.name)
```
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from freezestudio.core.graph.description import is_described


def graph_of(model):
    """The layer graph of a model.

    Args:
        model: any Keras layer or model.

    Returns:
        The Functional model itself, a Sequential's inner Functional (None while the
        Sequential is unbuilt), or None for anything without a layer graph (a plain
        layer, a subclassed model).
    """
    if type(model).__name__ == "Sequential":
        model = getattr(model, "_functional", None)
    if model is None or not hasattr(model, "_nodes_by_depth"):
        return None
    return model


def class_name(layer) -> str:
    """The Keras class name of a layer or model (a description's, see
    `core/graph/description.py`, is the class it describes)."""
    described = getattr(layer, "class_name", None)
    return described if isinstance(described, str) and is_described(layer) \
        else type(layer).__name__


def is_model(layer) -> bool:
    """Whether a layer is a Keras model (Functional, Sequential or subclassed)."""
    if is_described(layer):
        return layer.is_model
    import keras

    return isinstance(layer, keras.Model)


def is_keras_operation(obj) -> bool:
    """Whether `obj` is a Keras operation (a layer or model), which records its calls."""
    return hasattr(obj, "_inbound_nodes")


def execution_order(graph, reverse: bool = False, include_inputs: bool = False) -> Iterator:
    """The graph's calls in the order Keras runs them: every call after the calls that
    produce its inputs.

    Args:
        graph: a graph (see `graph_of`).
        reverse: the order of a backward pass instead: the depths outputs first, so every
            call comes before the calls that produce its inputs (calls of one depth, which
            never feed each other, keep their order).
        include_inputs: also yield the `Input` calls (`node.is_input`), at their depth.

    Returns:
        An iterator over the call nodes.
    """
    by_depth = graph._nodes_by_depth
    for depth in sorted(by_depth, reverse=not reverse):
        for node in by_depth[depth]:
            if include_inputs or not node.is_input:
                yield node


def all_calls(graph) -> list:
    """Every call of a graph, `Input` calls included, in Keras's own node-map order (no
    particular order: use `execution_order` where order matters)."""
    return [node for nodes in graph._nodes_by_depth.values() for node in nodes]


def layer_calls(layer) -> list:
    """Every call of a layer, in the order they were made, across every graph it was
    called in (including replays, see `replay`)."""
    return list(layer._inbound_nodes)


def producer(tensor):
    """The layer whose call produced a symbolic tensor (an `InputLayer` for an `Input`),
    or None for a tensor that no call produced (not symbolic, or a bare KerasTensor)."""
    history = getattr(tensor, "_keras_history", None)
    return None if history is None else history.operation


def inbound_call(tensor) -> tuple | None:
    """The call that produced a symbolic tensor.

    Returns:
        `(call node, output index)`: the tensor is `node.outputs[index]`; None for a
        tensor that no call produced. `(id(node), index)` is how FreezeStudio keys one
        output of one call (a stop-gradient point).
    """
    layer = producer(tensor)
    if layer is None:
        return None
    history = tensor._keras_history
    return layer._inbound_nodes[history.node_index], history.tensor_index


def inputs_struct(model):
    """The (nested) input structure a Functional model was built on (a tensor, a list or
    a dict of its `inputs`), or None for a model without one (a Sequential, a subclassed
    model; a Sequential's graph has one: `inputs_struct(graph_of(model))`)."""
    return getattr(model, "_inputs_struct", None)


def outputs_struct(model):
    """The (nested) output structure a Functional model was built on, or None (see
    `inputs_struct`)."""
    return getattr(model, "_outputs_struct", None)


def replay(graph, tensors: dict, skip=frozenset(), layer_of: Callable | None = None,
           after: Callable | None = None):
    """Re-runs a graph's calls, in execution order, on other tensors.

    One traversal with two hooks, in the manner of `keras.models.clone_model`'s
    `call_function`, but (unlike it) with the same layer objects by default, on any
    tensors (the graph's own `Input`s are not cloned), and with hooks that receive the
    call node, so the two calls of a shared layer are told apart.

    Args:
        graph: a graph (see `graph_of`).
        tensors: `{id(original tensor): new tensor}` to start from (the graph's inputs,
            or any cut through it); it is filled in as calls run.
        skip: `id(node)` of calls not to re-run (their outputs must be in `tensors`).
        layer_of: `node -> callable` to call instead of `node.operation` (another layer,
            e.g. a rebuilt nested model, or a plain function, e.g. an identity); it is
            called with the call's own arguments, filled in with the new tensors.
        after: `(node, output index, new tensor) -> tensor` to use in its place, e.g. the
            output of a layer inserted after it.

    Returns:
        The graph's output structure over the new tensors. Each call adds a node to its
        layer (see `layer_calls`), which the original graph ignores (Keras indexes calls
        per graph). Build a model from it with `keras.Model(inputs_struct(graph), ...)`
        when `tensors` starts from the graph's own inputs (see the module's example).

    Example: the output of every call of a shared layer, each with its own
    `StopGradient` after it:

    ```python
    def after(call, index, tensor):
        return StopGradient()(tensor) if call.operation is shared else tensor

    outputs = replay(graph, {id(t): t for t in graph.inputs}, after=after)
    ```
    """
    import keras

    for node in execution_order(graph):
        if id(node) in skip:
            continue
        args, kwargs = node.arguments.fill_in(tensors)
        layer = node.operation if layer_of is None else layer_of(node)
        outputs = keras.tree.flatten(layer(*args, **kwargs))
        for index, (old, new) in enumerate(zip(node.outputs, outputs, strict=True)):
            tensors[id(old)] = new if after is None else after(node, index, new)
    return keras.tree.map_structure(lambda t: tensors[id(t)], outputs_struct(graph))
