"""Static analysis: which layers does a gradient from the model's outputs reach?

A layer call receives gradient iff one of its output tensors has a path to a model
output that is differentiable all the way: every tensor on it has a floating dtype
(integer/boolean tensors - argmax, casts, lookups - carry no gradient) and no
stop-gradient layer lies on it. Freezing does not matter here: a frozen layer still
passes gradients back to its inputs. A weight then receives gradient iff it is
trainable and its layer receives gradient (see `Document.receives_gradient`).

Nested Functional/Sequential models are analysed per call, so a nested model shared by
two calls is exact for each. Subclassed models have no graph: they are analysed as a
whole at their boundary (`opaque`).

For a layer that receives nothing, the analysis records which stop-gradient layers cut
its paths to an output (empty: its outputs reach no output, or only through
non-differentiable tensors).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from freezestudio.core.graph.functional import execution_order, graph_of

LIVE = "live"


def _join(a, b):
    """Joins two tensor states: None (unreached) < frozenset of blockers < LIVE."""
    if a == LIVE or b == LIVE:
        return LIVE
    if a is None:
        return b
    if b is None:
        return a
    return a | b


def carries_gradient(tensor) -> bool:
    dtype = str(getattr(tensor, "dtype", "float32"))
    return "float" in dtype or "complex" in dtype


def cuts_gradient(layer) -> bool:
    """Whether a layer is a FreezeStudio stop-gradient point."""
    return bool(getattr(layer, "freezestudio_stop_gradient", False))


@dataclass
class FlowResult:
    """Per layer object (keyed by `id(layer)`): LIVE, or the set of stop-gradient names
    that cut it off. Layers of graph models that no call reaches are absent from
    `states` but listed in `graph_layers`; `opaque` holds subclassed models."""

    states: dict[int, object] = field(default_factory=dict)
    graph_layers: set[int] = field(default_factory=set)
    opaque: set[int] = field(default_factory=set)

    def state(self, layer):
        return self.states.get(id(layer))

    def record(self, layer, state) -> None:
        self.states[id(layer)] = _join(self.states.get(id(layer)), state)


def analyze(model) -> FlowResult:
    """Runs the analysis from every output of `model` (each output starts LIVE)."""
    result = FlowResult()
    graph = graph_of(model)
    if graph is None:
        result.opaque.add(id(model))
        result.record(model, LIVE)
        return result
    result.record(model, LIVE)
    _propagate(graph, [LIVE] * len(graph.outputs), result)
    return result


def _propagate(graph, output_states, result: FlowResult) -> list:
    """Propagates output states backwards through one call of `graph`; returns the
    states of its inputs."""
    states: dict[int, object] = {}

    def join_into(tensor, state):
        if state is not None and carries_gradient(tensor):
            states[id(tensor)] = _join(states.get(id(tensor)), state)

    for tensor, state in zip(graph.outputs, output_states, strict=True):
        join_into(tensor, state)
    for node in execution_order(graph, reverse=True, include_inputs=True):
        layer = node.operation
        result.graph_layers.add(id(layer))
        if node.is_input:
            continue
        outs = [states.get(id(t)) for t in node.outputs]
        for state in _input_states(layer, outs, node, result):
            if state[1] is not None:
                join_into(*state)
    return [states.get(id(t)) for t in graph.inputs]


def _input_states(layer, outs, node, result: FlowResult):
    """(input tensor, state) pairs for one call, recording the layer's own state."""
    merged = None
    for state in outs:
        merged = _join(merged, state)
    if merged is None:
        return []
    result.record(layer, merged)
    inputs = node.input_tensors
    if cuts_gradient(layer):
        blocked = frozenset({layer.name}) | (merged if merged != LIVE else frozenset())
        return [(tensor, blocked) for tensor in inputs]
    inner = graph_of(layer)
    if inner is not None and len(inner.outputs) == len(outs) and len(inner.inputs) == len(inputs):
        return list(zip(inputs, _propagate(inner, outs, result), strict=True))
    if hasattr(layer, "layers") and inner is None:
        result.opaque.add(id(layer))
    return [(tensor, merged) for tensor in inputs]
