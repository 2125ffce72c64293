"""Stop-gradient points: insert `StopGradient` layers after chosen layer outputs.

An insertion point is one floating-point output tensor of one call of a layer inside a
model with a layer graph (the top model, nested Functional or Sequential models). Points
are numbered per layer in graph order: the order in which Keras runs the graph (calls
farthest from the outputs first, as `Functional` orders its nodes by depth), then output
index. That order depends on the graph's structure only, so a plan's `PATH[k]` names the
same point after a save and reload. A layer with one point is addressed by its path,
otherwise by `PATH[k]`.

The document always keeps the graph without points (`base`); the model it trains and saves
is rebuilt from it by re-running each affected graph with the SAME layer objects, so every
weight stays the same variable, bit for bit. Only containers that hold a point (or contain
one that does) are rebuilt; a Sequential rebuilt this way becomes a Functional model.
"""

from __future__ import annotations

import difflib
import re
import weakref
from collections import defaultdict
from dataclasses import dataclass, field

from freezestudio.core.errors import PlanError
from freezestudio.core.graph import description
from freezestudio.core.graph.description import DescribedLayer, is_described
from freezestudio.core.graph.functional import (
    execution_order,
    graph_of,
    inbound_call,
    inputs_struct,
    replay,
)
from freezestudio.core.graph.gradient_flow import LIVE, carries_gradient, cuts_gradient
from freezestudio.core.model.document import Document
from freezestudio.core.model.layer_graph import base_layer
from freezestudio.core.model.tree import LayerNode

_INDEXED = re.compile(r"^(.*)\[(\d+)\]$")
REBUILT_GRAPHS_KEPT = 8
"""Rebuilt graphs kept per document, by point set: undo, redo and toggling a point back
reuse them instead of re-running the graph (0.1-0.4 s on 500-800-layer models, and every
re-run leaves one more call node on each layer)."""


@dataclass
class _PointCache:
    """What this module keeps per document: its point table and recent rebuilt graphs
    (point set -> (model, {container path: layer}, its `GradientView`), the most recent
    last: the view keeps the graph's gradient-flow analysis too)."""

    table: dict | None = None
    rebuilt: dict = field(default_factory=dict)


_CACHES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _cache(document: Document) -> _PointCache:
    cache = _CACHES.get(document)
    if cache is None:
        cache = _CACHES[document] = _PointCache()
    return cache


def point_table(document: Document) -> dict[str, list[tuple[int, int]]]:
    """For every layer path with insertion points: its points as (id(node), output index).

    It depends on the graph without points only, which a document never changes: computed
    once per document.
    """
    cache = _cache(document)
    if cache.table is None:
        cache.table = _build_point_table(document)
    return cache.table


def _graph_containers(document: Document, container: LayerNode):
    """(container, layer graph) for the top model and every model nested in such graphs.
    A subclassed model ends the descent: the models it calls are its attributes, which a
    rebuild cannot replace, so they hold no points."""
    if not container.is_container or container.layer is None:
        return
    graph = graph_of(base_layer(document, container))
    if graph is None:
        return
    yield container, graph
    for child in container.children:
        yield from _graph_containers(document, child)


def _build_point_table(document: Document) -> dict[str, list[tuple[int, int]]]:
    table: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for container, graph in _graph_containers(document, document.root):
        children = {id(base_layer(document, c)): c for c in container.children}
        for node in execution_order(graph):
            child = children.get(id(node.operation))
            if child is None:
                continue
            for index, tensor in enumerate(node.outputs):
                if carries_gradient(tensor):
                    table[child.path].append((id(node), index))
    return dict(table)


def point_addresses(path: str, count: int) -> list[str]:
    return [path] if count == 1 else [f"{path}[{k}]" for k in range(count)]


def addresses_by_layer(document: Document) -> dict[str, list[str]]:
    """Layer path -> the addresses of its insertion points, for every layer that has any."""
    return {path: point_addresses(path, len(points))
            for path, points in point_table(document).items()}


def insertion_points(document: Document, node: LayerNode) -> list[str]:
    """The point addresses of one layer ([] inside subclassed models or for int outputs)."""
    return point_addresses(node.path, len(point_table(document).get(node.path, [])))


def resolve(document: Document, entries) -> list[str]:
    """Expands plan entries (`PATH` = all points of the layer, `PATH[k]`) to point addresses.

    Raises:
        PlanError: an entry names no insertion point.
    """
    table = point_table(document)
    resolved = []
    for entry in entries:
        match = _INDEXED.match(entry)
        path, index = (match.group(1), int(match.group(2))) if match else (entry, None)
        points = table.get(path)
        if not points or (index is not None and index >= len(points)):
            raise PlanError(_unknown_point_message(entry, path, table))
        addresses = point_addresses(path, len(points))
        resolved += addresses if index is None else [addresses[index]]
    return resolved


def _unknown_point_message(entry: str, path: str, table: dict) -> str:
    if path in table:
        return f"stop-gradient point '{entry}': layer '{path}' has {len(table[path])} point(s)"
    close = difflib.get_close_matches(path, list(table), n=3, cutoff=0.4)
    hint = f"; closest: {', '.join(close)}" if close else ""
    return (f"stop-gradient point '{entry}' matches no layer output in a layer graph "
            f"(layers inside subclassed models and integer outputs have none){hint}")


def add_stop_gradient_points(document: Document, entries) -> None:
    set_stop_gradient_points(document, points_after(document, add=entries))


def remove_stop_gradient_points(document: Document, entries) -> None:
    set_stop_gradient_points(document, points_after(document, remove=entries))


def points_after(document: Document, add=(), remove=()) -> list[str]:
    """The document's points once the `remove` entries are removed and the `add` entries
    added, in graph order (nothing is changed).

    Raises:
        PlanError: an entry names no insertion point.
    """
    unwanted = set(resolve(document, remove))
    kept = [p for p in document.stop_points if p not in unwanted]
    return _in_graph_order(point_table(document), kept + resolve(document, add))


def _in_graph_order(table: dict, addresses) -> list[str]:
    chosen = set(addresses)
    return [a for path in table for a in point_addresses(path, len(table[path]))
            if a in chosen]


def set_stop_gradient_points(document: Document, addresses) -> None:
    """Makes `addresses` the document's points and rebuilds the model accordingly (or
    takes the graph `prepare_graph` built for them).

    The document's point writer (`Document.set_stop_points` calls it); it hands the
    rebuilt graph to `Document.replace_graph`.
    """
    table = point_table(document)
    points = _in_graph_order(table, addresses)
    if points == document.stop_points:
        return
    kept = _cache(document).rebuilt.pop(tuple(points), None)
    if kept is None:
        kept = _build(document, table, points)
    keep_graph(document, (points, kept))
    model, containers, gradient = kept
    document.replace_graph(model, points, containers, gradient)


def prepare_graph(document: Document, addresses) -> tuple | None:
    """Builds the graph for these points without installing it, for `keep_graph`: the
    slow part of a stop-gradient edit (0.1-0.4 s on 500-800-layer models), which may run
    on another thread than the document's while no edit runs (it reads only the graph
    without points and the tree, which no edit changes, and makes new model objects),
    with what receives gradient in it (`Document.prepare_gradient`), so that installing
    it computes next to nothing.

    Returns:
        (points, graph) for `keep_graph`, or None when there is nothing to build (these
        are the current points, or their graph is kept already).
    """
    if graph_ready(document, addresses):
        return None
    table = point_table(document)
    points = _in_graph_order(table, addresses)
    return points, _build(document, table, points)


def graph_ready(document: Document, addresses) -> bool:
    """Whether setting these points needs no graph built (current, or kept)."""
    points = _in_graph_order(point_table(document), addresses)
    return points == document.stop_points or tuple(points) in _cache(document).rebuilt


def keep_graph(document: Document, prepared: tuple | None) -> None:
    """Keeps a graph `prepare_graph` built (the most recent last, `REBUILT_GRAPHS_KEPT`
    of them), so that setting those points takes it instead of building it again."""
    if prepared is None:
        return
    points, kept = prepared
    rebuilt = _cache(document).rebuilt
    rebuilt.pop(tuple(points), None)
    rebuilt[tuple(points)] = kept
    while len(rebuilt) > REBUILT_GRAPHS_KEPT:
        del rebuilt[next(iter(rebuilt))]


def _build(document: Document, table: dict, points: list[str]) -> tuple:
    """(model, {container path: its object}, its `GradientView`) with a StopGradient
    after each point."""
    selected = {table[a.partition("[")[0]][_index(a)] for a in points}
    containers: dict = {}
    model = _rebuild_tree(document, document.root, selected, containers) or \
        document.base_layers[""]
    return model, containers, document.prepare_gradient(model, containers)


def _index(address: str) -> int:
    match = _INDEXED.match(address)
    return int(match.group(2)) if match else 0


def _rebuild_tree(document: Document, container: LayerNode, selected: set, layers: dict):
    """Rebuilds `container` if it or a nested container holds a selected point.

    Fills `layers` with container path -> its Keras object in the new graph, for this
    container and every container below it. Returns the new model, or None if unchanged.
    """
    base = base_layer(document, container)
    replaced = {}
    for child in container.children:
        if child.is_container:
            new = _rebuild_tree(document, child, selected, layers)
            if new is not None:
                replaced[id(base_layer(document, child))] = new
    graph = graph_of(base)
    own = graph is not None and any(
        (id(node), i) in selected
        for node in execution_order(graph) for i in range(len(node.outputs)))
    if not own and not replaced:
        layers[container.path] = base
        return None
    new = layers[container.path] = _rerun_graph(graph, base.name, selected, replaced)
    return new


def _rerun_graph(graph, name: str, selected: set, replaced: dict):
    """The graph re-run with a StopGradient after each selected output (a description
    is re-made as a description: `core/graph/description.py`)."""
    taken = {op.name for op in graph.operations}
    described = is_described(graph)
    if described:
        def stop_gradient(**kwargs):
            return lambda tensor: DescribedLayer(stop_gradient=True, class_name="StopGradient",
                                                 **kwargs)(tensor)[0]
    else:
        from freezestudio.core.graph.stop_gradient_layer import StopGradient as stop_gradient

    def cut(node, index, tensor):
        if (id(node), index) not in selected:
            return tensor
        suffix = "" if len(node.outputs) == 1 else f"_{index}"
        return stop_gradient(name=_unique(f"{node.operation.name}_stop_gradient{suffix}",
                                          taken))(tensor)

    def layer_of(node):
        return replaced.get(id(node.operation), node.operation)

    if described:
        return description.replay(graph, name, layer_of, cut)
    import keras

    outputs = replay(graph, {id(t): t for t in graph.inputs}, layer_of=layer_of, after=cut)
    return keras.Model(inputs_struct(graph), outputs, name=name)


def _unique(name: str, taken: set) -> str:
    candidate, n = name, 1
    while candidate in taken:
        candidate, n = f"{name}_{n}", n + 1
    taken.add(candidate)
    return candidate


def strip_stop_gradients(model):
    """Removes StopGradient layers from a loaded model.

    Returns:
        (model without them, set of (id(call node), output index) in the new graph that the
        removed layers followed; `addresses_of` turns them into point addresses).
    """
    if not any(cuts_gradient(layer) for layer in _all_layers(model)):
        return model, set()
    found: set[tuple[int, int]] = set()
    return _strip(model, found, {}), found


def addresses_of(document: Document, keys: set) -> list[str]:
    """Point addresses for (id(call node), output index) keys of the base graph."""
    return [address for path, points in point_table(document).items()
            for address, key in zip(point_addresses(path, len(points)), points, strict=True)
            if key in keys]


def _all_layers(model):
    for layer in getattr(model, "layers", []):
        yield layer
        yield from _all_layers(layer)


def _strip(model, found: set, done: dict):
    """`model` re-run without its StopGradient layers (nested graphs too, each stripped
    once and shared by its calls), adding to `found` the (id(call node), output index) in
    the new graph that each removed layer followed."""
    import keras

    graph = graph_of(model)
    if graph is None:
        return model

    def identity(tensor, *args, **kwargs):
        node, index = inbound_call(tensor)
        found.add((id(node), index))
        return tensor

    def layer_of(node):
        layer = node.operation
        if cuts_gradient(layer):
            return identity
        if graph_of(layer) is not None and any(cuts_gradient(sub) for sub in _all_layers(layer)):
            if id(layer) not in done:
                done[id(layer)] = _strip(layer, found, done)
            return done[id(layer)]
        return layer

    outputs = replay(graph, {id(t): t for t in graph.inputs}, layer_of=layer_of)
    return keras.Model(inputs_struct(graph), outputs, name=model.name)


def freeze_upstream(document: Document, address: str) -> None:
    """Freezes every layer upstream of a stop-gradient point that the cut leaves without
    gradient (a layer that still gets gradient along another path stays as it is).

    A stop-gradient alone does not stop BatchNorm statistics upstream from moving in
    training mode, and plain `fit` still computes the cut-off gradients (docs/architecture.md);
    freezing upstream fixes both and makes the prefix cacheable.
    """
    (resolved,) = resolve(document, [address])
    path = resolved.partition("[")[0]
    node_id, index = point_table(document)[path][_index(resolved)]
    layer_node = document.layer(path)
    container = layer_node.parent
    graph = graph_of(base_layer(document, container))
    call = next(n for n in execution_order(graph) if id(n) == node_id)
    upstream = _upstream_nodes(document, container, call)
    document.set_trainable([n for n in upstream if document.flow_state(n) != LIVE], False)


def _upstream_nodes(document: Document, container: LayerNode, call) -> list[LayerNode]:
    by_layer = {id(base_layer(document, c)): c for c in container.children}
    upstream, stack, seen = [], [call], set()
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        child = by_layer.get(id(node.operation))
        if child is not None:
            upstream.append(child)
        stack += [inbound_call(t)[0] for t in node.input_tensors]
    return upstream
