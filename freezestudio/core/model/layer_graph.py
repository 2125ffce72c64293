"""Reading a document's layer graphs: a layer's calls and its neighbours.

The graphs read here are the ones without stop-gradient layers (`Document.base_layers`),
so what the user sees does not depend on where points are set.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from freezestudio.core.graph.functional import all_calls, execution_order, graph_of, producer

if TYPE_CHECKING:
    from freezestudio.core.model.document import Document
    from freezestudio.core.model.tree import LayerNode


def base_layer(document: Document, node: LayerNode):
    """The node's Keras object in the graph without stop-gradient layers."""
    return document.base_layers.get(node.path, node.layer)


def base_graph(document: Document, container: LayerNode):
    """The container's functional graph without stop-gradient layers, or None."""
    layer = base_layer(document, container)
    return graph_of(layer) if layer is not None else None


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
    calls = all_calls(graph)
    mine = [c for c in calls if c.operation is node.layer]
    outputs = {id(t) for c in mine for t in c.outputs}
    inbound = list(dict.fromkeys(producer(t).name for call in mine for t in call.input_tensors))
    outbound = list(dict.fromkeys(
        call.operation.name for call in calls
        if call.operation is not node.layer and any(id(t) in outputs for t in call.input_tensors)))
    if any(id(t) in outputs for t in graph.outputs):
        outbound.append("(model output)")
    return inbound, outbound
