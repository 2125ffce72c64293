"""What gradient reaches, for one graph and one freeze state (the document's derived
gradient state).

A `GradientView` answers `Document.flow_state`, `receives_gradient` and
`receiving_params` for one model graph: it runs the gradient-flow analysis of that graph
(`core/graph/gradient_flow.py`) at most once and computes each answer at most once. The
analysis depends on the graph only, so a view made for another freeze state of the same
graph (`for_freeze_state`) shares it; the answers depend on the freeze state too, and
start empty.

A view is a plain object that reads nothing but its graph, the tree's structure and the
freeze state it was given: it can be made and filled on another thread than the
document's (`Document.prepare_gradient`, for a graph about to be installed by
`Document.replace_graph`) and handed over complete.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from freezestudio.core.graph.gradient_flow import LIVE, FlowResult, analyze
from freezestudio.core.model.tree import LayerNode, WeightNode

PARTIAL = "partial"


def aggregate(states: set) -> bool | str:
    """One state for several weights' (not empty): the common one, else PARTIAL."""
    return states.pop() if len(states) == 1 else PARTIAL


class GradientView:
    """Gradient flow and what receives gradient, for one graph and one freeze state.

    Args:
        model: the top model of the graph (with its stop-gradient layers).
        is_trainable: `weight -> bool`, the freeze state (trainable iff the weight's
            variable is in the trainable set).
        containers: container path -> its Keras object in this graph, where the tree's
            nodes do not hold them yet (a graph not installed); None: the nodes' own.
        generation: the document's edit count this freeze state belongs to (the document
            takes a prepared view only if no edit happened since).
        analysis: the graph's `FlowResult`, if already known.
        has_graph: False for a model without a layer graph (a generic SavedModel):
            nothing to analyse, every layer counts as reached.
    """

    def __init__(self, model, is_trainable: Callable[[WeightNode], bool],
                 containers: Mapping | None = None, generation: int = 0,
                 analysis: FlowResult | None = None, has_graph: bool = True):
        self._model = model
        self._has_graph = has_graph
        self._is_trainable = is_trainable
        self._containers = containers
        self.generation = generation
        self._analysis = analysis
        self._memo: dict = {}

    def for_freeze_state(self, is_trainable: Callable[[WeightNode], bool],
                         generation: int) -> GradientView:
        """The same graph (and its analysis, if run) under another freeze state."""
        return GradientView(self._model, is_trainable, self._containers, generation,
                            self._analysis, self._has_graph)

    @property
    def analysis(self) -> FlowResult:
        """The graph's gradient-flow analysis (run on first use)."""
        if self._analysis is None:
            self._analysis = analyze(self._model)
        return self._analysis

    def _layer(self, node: LayerNode):
        if self._containers is not None and node.is_container:
            return self._containers.get(node.path, node.layer)
        return node.layer

    def _memoized(self, kind: str, node, compute):
        key = (kind, id(node))
        try:
            return self._memo[key]
        except KeyError:
            value = self._memo[key] = compute()
            return value

    # --- answers ----------------------------------------------------------------------
    def flow_state(self, node: LayerNode):
        """LIVE if some call of the layer gets gradient from an output, else the set of
        stop-gradient layer names that cut it off (empty: no differentiable path)."""
        if not self._has_graph:
            return LIVE
        return self._memoized("flow", node, lambda: self._flow_state(node))

    def _flow_state(self, node: LayerNode):
        flow = self.analysis
        for candidate in (node, *node.ancestors()):
            layer = self._layer(candidate)
            if layer is None:
                continue
            state = flow.state(layer)
            if state is not None or id(layer) in flow.graph_layers:
                return state if state is not None else frozenset()
            parent = candidate.parent
            parent_layer = self._layer(parent) if parent is not None else None
            if parent is None or (id(parent_layer) in flow.graph_layers
                                  and id(parent_layer) not in flow.opaque):
                return frozenset()  # in an analysed graph that no call of it reaches
            # Inside a subclassed model, possibly in a graph model it calls: the analysis
            # never saw this layer, which gets the state of the model around it.
        return frozenset()

    def receives_gradient(self, node: LayerNode | WeightNode) -> bool | str:
        """Per weight: trainable and its layer reached by gradient. Per layer: aggregated
        over its weights (True, False or PARTIAL)."""
        if isinstance(node, WeightNode):
            return self._is_trainable(node) and self.flow_state(node.layer) == LIVE
        return self._memoized("receives", node, lambda: self._layer_receives(node))

    def _layer_receives(self, node: LayerNode) -> bool | str:
        states = {self.receives_gradient(w) for w in node.all_weights() if w.freezable}
        return aggregate(states) if states else False

    def receiving_params(self, node: LayerNode) -> int:
        """Parameters at or below `node` that receive gradient."""
        return self._memoized("receiving", node, lambda: sum(
            w.size for w in node.all_weights() if self.receives_gradient(w)))

    def compute_containers(self, root: LayerNode) -> GradientView:
        """Computes now what costs a walk of a subtree: the answers of every container
        (the rest is one lookup per row). Returns the view."""
        for node in root.walk():
            if node.is_container:
                self.receives_gradient(node)
                self.receiving_params(node)
        return self
