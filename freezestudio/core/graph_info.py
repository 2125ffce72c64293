"""Reading a document's layer graphs: calls in execution order, a layer's neighbours.

The graphs read here are the ones without stop-gradient layers (`Document.base_layers`),
so what the user sees does not depend on where points are set.
"""

from __future__ import annotations

from freezestudio.core.document import Document
from freezestudio.core.gradient_flow import graph_of
from freezestudio.core.tree import LayerNode


def base_layer(document: Document, node: LayerNode):
    """The node's Keras object in the graph without stop-gradient layers."""
    return document.base_layers.get(node.path, node.layer)


def base_graph(document: Document, container: LayerNode):
    """The container's functional graph without stop-gradient layers, or None."""
    layer = base_layer(document, container)
    return graph_of(layer) if layer is not None else None


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


def layer_calls(document: Document, node: LayerNode) -> list:
    """The call nodes of a layer in its parent's graph, in execution order."""
    if node.parent is None or node.layer is None:
        return []
    graph = base_graph(document, node.parent)
    if graph is None:
        return []
    return [call for call in execution_order(graph) if call.operation is node.layer]


def neighbours(document: Document, node: LayerNode) -> tuple[list[str], list[str]]:
    """(inbound, outbound) layer names of a layer within its parent graph; a model output
    counts as the outbound "(model output)"."""
    if node.parent is None or node.layer is None:
        return [], []
    graph = base_graph(document, node.parent)
    if graph is None:
        return [], []
    all_calls = [c for nodes in graph._nodes_by_depth.values() for c in nodes]
    mine = [c for c in all_calls if c.operation is node.layer]
    outputs = {id(t) for c in mine for t in c.outputs}
    inbound = list(dict.fromkeys(t._keras_history.operation.name
                                 for call in mine for t in call.input_tensors))
    outbound = list(dict.fromkeys(
        call.operation.name for call in all_calls
        if call.operation is not node.layer and any(id(t) in outputs for t in call.input_tensors)))
    if any(id(t) in outputs for t in graph.outputs):
        outbound.append("(model output)")
    return inbound, outbound
