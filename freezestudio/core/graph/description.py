"""Graph descriptions: a model's structure without the model (no Keras, no TensorFlow).

A description stands in for a Keras model where only its structure is needed (opening a
`.keras` file from its config, docs/architecture.md "Config-first opening"). It offers
exactly the part of Keras's layer, variable and graph surface that the tree builder
(`core/model/tree.py`), the gradient-flow analysis (`core/graph/gradient_flow.py`), the
stop-gradient point table (`core/edits/stop_gradient.py`) and the document read, under
the same names, so those modules have ONE implementation for both:

- a layer (`DescribedLayer`): `name`, `trainable` (its setter cascades as Keras's does),
  `_trainable_variables`, `_non_trainable_variables`, `_layers`, `weights`,
  `trainable_weights`, `_inbound_nodes`, `freezestudio_stop_gradient`;
- a model (`DescribedModel`): also `layers` and, as a graph, `_nodes_by_depth`,
  `inputs`, `outputs`, `operations` (a Sequential's graph is its `_functional`);
- a call (`DescribedCall`): `operation`, `input_tensors`, `outputs`, `is_input`;
- a tensor (`DescribedTensor`): `shape`, `dtype`, `_keras_history`;
- a variable (`DescribedVariable`): `name`, `shape`, `dtype`, `trainable`.

`class_name` and `is_model` in `core/graph/functional.py` tell described objects' class
and kind; `is_described` tells them from Keras objects. The call order and depths are
computed with Keras's own rule (`keras.src.ops.function.map_graph`: depth-first from the
outputs, a call's depth the longest distance to an output, layers ordered by depth then
first visit), so `layers` and the execution order equal those of the loaded model.
"""

from __future__ import annotations

from collections import defaultdict, namedtuple

KerasHistory = namedtuple("KerasHistory", ["operation", "node_index", "tensor_index"])


def is_described(obj) -> bool:
    """Whether `obj` is a description (not a Keras object)."""
    return isinstance(obj, DescribedLayer | DescribedVariable | DescribedTensor)


class DescribedVariable:
    """A weight as its layer's config and the weights file describe it."""

    def __init__(self, name: str, shape: tuple[int, ...], dtype: str, trainable: bool):
        self.name = name
        self.path = name
        self.shape = tuple(shape)
        self.dtype = dtype
        self.trainable = trainable


class DescribedTensor:
    """One output of one call: its shape (None for unknown dims) and dtype name."""

    def __init__(self, shape, dtype: str):
        self.shape = tuple(shape) if shape is not None else None
        self.dtype = dtype
        self._keras_history = None


class DescribedCall:
    """One call of a layer on described tensors; `is_input` for an `Input`'s call."""

    def __init__(self, operation: DescribedLayer, input_tensors: list, outputs: list,
                 is_input: bool = False):
        self.operation = operation
        self.input_tensors = list(input_tensors)
        self.outputs = list(outputs)
        self.is_input = is_input
        index = len(operation._inbound_nodes)
        operation._inbound_nodes.append(self)
        for k, tensor in enumerate(self.outputs):
            tensor._keras_history = KerasHistory(operation, index, k)

    @property
    def parent_calls(self) -> list:
        return [t._keras_history.operation._inbound_nodes[t._keras_history.node_index]
                for t in self.input_tensors if t._keras_history is not None]


class DescribedLayer:
    """A layer: its class, flag and own variables (`trainable`: Keras's created flag)."""

    is_model = False

    def __init__(self, name: str, class_name: str, trainable: bool = True,
                 variables: list[tuple[DescribedVariable, bool]] = (),
                 stop_gradient: bool = False):
        self.name = name
        self.class_name = class_name
        self._trainable = bool(trainable)
        self._trainable_variables = [v for v, created in variables if created]
        self._non_trainable_variables = [v for v, created in variables if not created]
        self._layers: list[DescribedLayer] = []
        self._inbound_nodes: list[DescribedCall] = []
        self.freezestudio_stop_gradient = stop_gradient

    @property
    def trainable(self) -> bool:
        return self._trainable

    @trainable.setter
    def trainable(self, value) -> None:
        """As Keras's setter: the flag, the own trainable variables and every sub-layer."""
        self._trainable = bool(value)
        for variable in self._trainable_variables:
            variable.trainable = self._trainable
        for layer in self._layers:
            layer.trainable = self._trainable

    @property
    def weights(self) -> list[DescribedVariable]:
        found, seen = [], set()
        for layer in self._all_layers():
            for variable in layer._trainable_variables + layer._non_trainable_variables:
                if id(variable) not in seen:
                    seen.add(id(variable))
                    found.append(variable)
        return found

    def _all_layers(self):
        yield self
        for layer in self._layers:
            yield from layer._all_layers()

    @property
    def trainable_weights(self) -> list[DescribedVariable]:
        """As Keras: none if the layer is frozen, else every weight whose flag is set."""
        return [v for v in self.weights if v.trainable] if self.trainable else []

    @property
    def output(self):
        """As Keras: the first call's output (a list for several), where every shape is
        known (the config records a tensor's shape where a call consumes it)."""
        outputs = self._inbound_nodes[0].outputs if self._inbound_nodes else []
        if not outputs or any(t.shape is None for t in outputs):
            raise AttributeError(f"the output shape of '{self.name}' is not described")
        return outputs[0] if len(outputs) == 1 else list(outputs)

    def __call__(self, *input_tensors) -> list[DescribedTensor]:
        """A new call on `input_tensors` whose outputs are like the first input's."""
        first = input_tensors[0]
        outputs = [DescribedTensor(first.shape, first.dtype)]
        DescribedCall(self, list(input_tensors), outputs)
        return outputs


class DescribedModel(DescribedLayer):
    """A Functional or Sequential model: its layers and its graph.

    Args:
        name, class_name, trainable: as the config says.
        inputs, outputs: the graph's flat input and output tensors (calls made already).
    """

    is_model = True

    def __init__(self, name: str, class_name: str, trainable: bool, inputs: list,
                 outputs: list):
        super().__init__(name, class_name, trainable)
        self.inputs = list(inputs)
        self.outputs = list(outputs)
        self._nodes_by_depth, self.operations = _map_graph(self.inputs, self.outputs)
        self._layers = list(self.operations)
        self._functional = self

    @property
    def layers(self) -> list[DescribedLayer]:
        """Keras's `Model.layers`: a Sequential's leaves out its `InputLayer`."""
        if self.class_name == "Sequential":
            return [layer for layer in self.operations if layer.class_name != "InputLayer"]
        return list(self.operations)


def _map_graph(inputs: list, outputs: list):
    """`keras.src.ops.function.map_graph` over descriptions: (calls by depth, operations)."""
    order: list[DescribedCall] = []
    first_visit: dict[int, int] = {}
    finished: set[int] = set()
    input_ids = {id(t) for t in inputs}

    def visit(tensor):
        history = tensor._keras_history
        call = history.operation._inbound_nodes[history.node_index]
        if id(call) in finished:
            return
        if not call.is_input and id(tensor) in input_ids:
            finished.add(id(call))
            return
        first_visit.setdefault(id(history.operation), len(first_visit))
        if not call.is_input:
            for parent in call.input_tensors:
                visit(parent)
        finished.add(id(call))
        order.append(call)

    for tensor in outputs:
        visit(tensor)
    in_graph = {id(c) for c in order}
    call_depths: dict[DescribedCall, int] = {}
    layer_depths: dict[int, int] = {}
    layers: dict[int, DescribedLayer] = {}
    for call in reversed(order):
        depth = call_depths.setdefault(call, 0)
        depth = max(depth, layer_depths.get(id(call.operation), 0))
        layer_depths[id(call.operation)] = depth
        layers[id(call.operation)] = call.operation
        call_depths[call] = depth
        for parent in call.parent_calls:
            if id(parent) in in_graph:
                call_depths[parent] = max(depth + 1, call_depths.get(parent, 0))
    for tensor in inputs:
        call = tensor._keras_history.operation._inbound_nodes[tensor._keras_history.node_index]
        layer = call.operation
        if id(layer) not in layer_depths and call.is_input:
            layer_depths[id(layer)] = 0
            layers[id(layer)] = layer
            first_visit[id(layer)] = -1
            call_depths[call] = 0
    by_depth = defaultdict(list)
    for call, depth in call_depths.items():
        by_depth[depth].append(call)
    layers_by_depth = defaultdict(list)
    for key, depth in layer_depths.items():
        layers_by_depth[depth].append(layers[key])
    operations = []
    for depth in sorted(layers_by_depth, reverse=True):
        operations += sorted(layers_by_depth[depth], key=lambda layer: first_visit[id(layer)])
    return dict(by_depth), operations


def replay(graph: DescribedModel, name: str, layer_of, after) -> DescribedModel:
    """`core.graph.functional.replay` for a description, and the model over it: the
    calls re-made in execution order with the same layers (or `layer_of(call)`), each
    output passed through `after(call, index, tensor)`."""
    tensors = {id(t): t for t in graph.inputs}
    for depth in sorted(graph._nodes_by_depth, reverse=True):
        for call in graph._nodes_by_depth[depth]:
            if call.is_input:
                continue
            outputs = [DescribedTensor(t.shape, t.dtype) for t in call.outputs]
            DescribedCall(layer_of(call), [tensors[id(t)] for t in call.input_tensors],
                          outputs)
            for index, (old, new) in enumerate(zip(call.outputs, outputs, strict=True)):
                tensors[id(old)] = after(call, index, new)
    class_name = "Functional"  # a rebuilt Sequential becomes Functional, as in Keras
    return DescribedModel(name, class_name, graph.trainable, graph.inputs,
                          [tensors[id(t)] for t in graph.outputs])
