"""The edit document: a loaded model, its tree and its freeze state.

The document is the single source of truth. Freeze state is kept per weight (for every
weight that can be trained at all); the state of a layer or container is derived from
the weights inside it (True, False or "partial"), so that "unfreeze one layer inside a
frozen backbone" and "freeze one bias beside a trainable kernel" are both plain edits.
Weightless layers (Dropout, pooling, ...) keep a flag of their own.

After every edit the state is written into the Keras objects (`write_flags`), so
`model.trainable_weights` is always exactly what the tree shows, and `needs_recompile`
is raised: Keras fixes the trainable set at `compile()`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from freezestudio.core.files.formats import SAVEDMODEL
from freezestudio.core.graph.gradient_flow import LIVE, analyze
from freezestudio.core.model.tree import LayerNode, WeightNode

PARTIAL = "partial"


@dataclass(frozen=True)
class ParamCounts:
    params: int
    trainable: int

    @property
    def non_trainable(self) -> int:
        return self.params - self.trainable


@dataclass(frozen=True)
class Snapshot:
    """An opaque copy of the edit state, for undo/redo."""

    weights: tuple[bool, ...]
    flags: tuple[tuple[str, bool], ...]
    stop_points: tuple[str, ...] = ()


class Document:
    """A model opened for editing.

    Args:
        root: the tree of the model.
        model: the underlying model object (a Keras model, or the app's SavedModel
            wrapper); its `trainable_weights` give the initial state.
        source_path: the file it was opened from.
        source_format: "keras", "h5", "tf_keras_savedmodel" or "savedmodel".
        flag_writer: writes the state into the model objects; defaults to Keras semantics.
    """

    def __init__(self, root: LayerNode, model, source_path: Path, source_format: str,
                 flag_writer: Callable[[Document], None] | None = None):
        self.root = root
        self.model = model
        self.source_path = Path(source_path)
        self.source_format = source_format
        self._flag_writer = flag_writer or write_keras_flags
        self._listeners: list[Callable[[], None]] = []
        self.needs_recompile = True
        self.modified = False
        self.compile_config: dict | None = None
        self._flow = None
        self.stop_points: list[str] = []
        self.base_layers: dict = {}  # container path -> model without stop-gradient layers
        # point set -> (model, {container path: layer}), see stop_gradient.REBUILT_GRAPHS_KEPT
        self.rebuilt_graphs: dict = {}
        self.point_table_cache = None  # stop_gradient.point_table's, per document
        self.notes: list[str] = []  # things the user should know about how it was opened
        self._layers = {node.path: node for node in root.walk()}
        self._weights = {w.id: w for node in root.walk() for w in node.weights}
        self.weights = list(self._weights.values())
        trained_now = {id(v) for v in model.trainable_weights}
        self._trainable = {id(w.variable): id(w.variable) in trained_now for w in self.weights}
        # Layers with nothing to train (Dropout, BatchNorm without gamma/beta) keep their own
        # flag: it still matters to Keras (e.g. BatchNorm's inference mode).
        self._flags = {node.path: bool(getattr(node.layer, "trainable", True))
                       for node in root.walk()
                       if not any(w.freezable for w in node.all_weights())}

    # --- lookup -------------------------------------------------------------------
    def layer(self, path: str) -> LayerNode:
        return self._layers[path]

    def weight(self, weight_id: str) -> WeightNode:
        return self._weights[weight_id]

    def find(self, address: str) -> LayerNode | WeightNode:
        """The node for a layer path or weight id. Raises KeyError."""
        if address in self._weights:
            return self._weights[address]
        return self._layers[address]

    @property
    def layer_paths(self) -> list[str]:
        return list(self._layers)

    @property
    def weight_ids(self) -> list[str]:
        return list(self._weights)

    # --- state --------------------------------------------------------------------
    def is_weight_trainable(self, weight: WeightNode) -> bool:
        return weight.freezable and self._trainable[id(weight.variable)]

    def trainable_state(self, node: LayerNode | WeightNode) -> bool | str:
        """True, False or PARTIAL ("partial") for a weight, layer or container."""
        if isinstance(node, WeightNode):
            return self.is_weight_trainable(node)
        states = {self.is_weight_trainable(w) for w in node.all_weights() if w.freezable}
        if not states:
            return self._flags.get(node.path, True)
        return states.pop() if len(states) == 1 else PARTIAL

    def set_trainable(self, nodes: Iterable[LayerNode | WeightNode], value: bool) -> None:
        """Freezes (value=False) or unfreezes the given weights, layers and containers."""
        value = bool(value)
        for node in nodes:
            if isinstance(node, WeightNode):
                if node.freezable:
                    self._trainable[id(node.variable)] = value
                continue
            for sub in node.walk():
                if sub.path in self._flags:
                    self._flags[sub.path] = value
            for weight in node.all_weights():
                if weight.freezable:
                    self._trainable[id(weight.variable)] = value
        self._changed()

    def trainable_weights(self) -> list[WeightNode]:
        return [w for w in self.weights if self.is_weight_trainable(w)]

    def layer_flag(self, node: LayerNode) -> bool:
        """The Keras `trainable` flag this layer gets: True iff anything inside trains."""
        return self.trainable_state(node) is not False

    def counts(self, node: LayerNode | WeightNode | None = None) -> ParamCounts:
        """Parameter counts of a node (default: the whole model), as Keras counts them."""
        node = self.root if node is None else node
        weights = [node] if isinstance(node, WeightNode) else list(node.all_weights())
        return ParamCounts(
            params=sum(w.size for w in weights),
            trainable=sum(w.size for w in weights if self.is_weight_trainable(w)),
        )

    # --- gradient flow ----------------------------------------------------------------
    def flow_state(self, node: LayerNode):
        """LIVE if some call of the layer gets gradient from an output, else the set of
        stop-gradient layer names that cut it off (empty: no differentiable path)."""
        if self.source_format == SAVEDMODEL:
            return LIVE  # generic SavedModels: no layer graph to analyse
        if self._flow is None:
            self._flow = analyze(self.model)
        flow = self._flow
        for candidate in (node, *node.ancestors()):
            if candidate.layer is None:
                continue
            state = flow.state(candidate.layer)
            if state is not None or id(candidate.layer) in flow.graph_layers:
                return state if state is not None else frozenset()
            parent = candidate.parent
            if parent is None or (id(parent.layer) in flow.graph_layers
                                  and id(parent.layer) not in flow.opaque):
                return frozenset()  # in an analysed graph that no call of it reaches
            # Inside a subclassed model, possibly in a graph model it calls: the analysis
            # never saw this layer, which gets the state of the model around it.
        return frozenset()

    def receives_gradient(self, node: LayerNode | WeightNode) -> bool | str:
        """Per weight: trainable and its layer reached by gradient. Per layer: aggregated
        over its weights (True, False or PARTIAL)."""
        if isinstance(node, WeightNode):
            return self.is_weight_trainable(node) and self.flow_state(node.layer) == LIVE
        states = {self.receives_gradient(w) for w in node.all_weights() if w.freezable}
        if not states:
            return False
        return states.pop() if len(states) == 1 else PARTIAL

    def receiving_params(self, node: LayerNode | None = None) -> int:
        node = self.root if node is None else node
        return sum(w.size for w in node.all_weights() if self.receives_gradient(w))

    def stop_gradient_after(self, node: LayerNode) -> list[str]:
        """The stop-gradient points set on this layer's outputs (`PATH` or `PATH[k]`)."""
        return [p for p in self.stop_points if p.partition("[")[0] == node.path]

    def invalidate_graph(self) -> None:
        """Forget derived graph facts after the model's graph was rebuilt."""
        self._flow = None

    # --- undo support and change notification --------------------------------------
    def snapshot(self) -> Snapshot:
        return Snapshot(
            weights=tuple(self._trainable[id(w.variable)] for w in self.weights),
            flags=tuple(sorted(self._flags.items())),
            stop_points=tuple(self.stop_points),
        )

    def restore(self, snapshot: Snapshot) -> None:
        for weight, value in zip(self.weights, snapshot.weights, strict=True):
            self._trainable[id(weight.variable)] = value
        self._flags = dict(snapshot.flags)
        if list(snapshot.stop_points) != self.stop_points:
            from freezestudio.core.edits.stop_gradient import set_stop_gradient_points

            set_stop_gradient_points(self, snapshot.stop_points)  # notifies listeners
        else:
            self._changed()

    def add_listener(self, callback: Callable[[], None]) -> None:
        """Calls `callback()` after every edit (the GUI refreshes its views from it)."""
        self._listeners.append(callback)

    def remove_listener(self, callback: Callable[[], None]) -> None:
        if callback in self._listeners:
            self._listeners.remove(callback)

    def _changed(self) -> None:
        self.write_flags()
        self.needs_recompile = True
        self.modified = True
        for callback in list(self._listeners):
            callback()

    def write_flags(self) -> None:
        """Writes the edit state into the model's objects."""
        self._flag_writer(self)


def write_keras_flags(document: Document) -> None:
    """Sets `trainable` on every Keras layer and variable so Keras agrees with the tree.

    Walks the tree parents first and sets each flag that differs, never relying on Keras's
    cascade (which a nested layer's own later assignment overrides, and which reloaded
    containers do not carry): a child is compared after its parent's cascade. Variables'
    own flags come last.
    """
    for node in document.root.walk():
        flag = document.layer_flag(node)
        if node.layer is not None and node.layer.trainable != flag:
            node.layer.trainable = flag  # cascades; children are compared after it
    for weight in document.weights:
        if weight.freezable and weight.variable.trainable != document.is_weight_trainable(weight):
            weight.variable.trainable = document.is_weight_trainable(weight)
