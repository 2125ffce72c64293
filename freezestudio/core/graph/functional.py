"""Keras functional graphs: their calls in execution order, and re-running them.

A graph here is a Functional model (a Sequential's inner Functional, see
`gradient_flow.graph_of`); these helpers read its private node structure
(`_nodes_by_depth`, `_outputs_struct`) so that callers do not.
"""

from __future__ import annotations


def execution_order(graph):
    """The graph's call nodes in the order Keras runs them (inputs first)."""
    for depth in sorted(graph._nodes_by_depth, reverse=True):
        for node in graph._nodes_by_depth[depth]:
            if not node.is_input:
                yield node


def replay(graph, tensors: dict, skip=frozenset(), layer_of=None, after=None):
    """Re-runs a graph's calls with the same layer objects on other tensors.

    Args:
        tensors: `{id(original tensor): new tensor}` to start from (the graph's inputs, or
            any cut through it); it is filled in as calls run.
        skip: `id(node)` of calls not to re-run (their outputs must be in `tensors`).
        layer_of: `node -> layer` to call instead of `node.operation`.
        after: `(node, output index, new tensor) -> tensor` to use in its place.

    Returns:
        The graph's output structure over the new tensors. Each call adds a node to its
        layer, which the original graph ignores (Keras indexes nodes per graph).
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
    return keras.tree.map_structure(lambda t: tensors[id(t)], graph._outputs_struct)
