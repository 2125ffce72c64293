"""Facts about tree nodes the GUI shows, read from the core (Qt-free, TF-free at import).

These are thin read-only adapters: output shapes, gradient reasons, graph neighbours,
weight statistics and stop-gradient insertion points.
"""

from __future__ import annotations

import math

import numpy as np

from freezestudio.core.graph.gradient_flow import LIVE
from freezestudio.core.model.document import PARTIAL
from freezestudio.core.model.tree import LayerNode, WeightNode


def owner(node: LayerNode | WeightNode) -> LayerNode:
    return node.layer if isinstance(node, WeightNode) else node


def has_freezable(node: LayerNode) -> bool:
    return any(w.freezable for w in node.all_weights())


def format_shape(shape) -> str:
    if shape is None:
        return ""
    if isinstance(shape, list):
        return ", ".join(format_shape(s) for s in shape)
    dims = ["None" if d is None else str(d) for d in shape]
    return f"({', '.join(dims)}{',' if len(dims) == 1 else ''})"


def output_shape(node: LayerNode) -> str:
    """The layer's (first call's) output shape, '' where Keras does not know it."""
    layer = node.layer
    if layer is None:
        return ""
    try:
        output = layer.output
    except Exception:  # noqa: BLE001 - subclassed/unbuilt layers have no symbolic output
        return ""
    if isinstance(output, list | tuple):
        return format_shape([tuple(t.shape) for t in output])
    if isinstance(output, dict):
        return format_shape([tuple(t.shape) for t in output.values()])
    shape = getattr(output, "shape", None)
    return format_shape(tuple(shape)) if shape is not None else ""


def gradient_reason(document, node: LayerNode | WeightNode) -> str:
    """Why a node does or does not receive gradient, in one or two sentences."""
    if isinstance(node, WeightNode) and not node.freezable:
        return "Not trained by gradient (a moving statistic or counter)."
    if isinstance(node, LayerNode) and node.class_name == "InputLayer":
        return "A model input: gradient ends here."
    layer = owner(node)
    flow = document.flow_state(layer)
    trainable = document.trainable_state(node)
    weighted = isinstance(node, WeightNode) or has_freezable(node)
    lines = []
    if flow == LIVE:
        if not weighted:
            lines.append("Gradient passes through this layer (it has no trainable weights).")
        elif trainable is True:
            lines.append("Receives gradient: trainable, with a differentiable path to an output.")
        elif trainable == PARTIAL:
            lines.append("Partly: only its trainable weights receive gradient.")
        else:
            lines.append("Frozen: its weights receive no gradient; gradient still passes "
                         "through to the layers before it.")
    else:
        if flow:
            lines.append("No gradient reaches it: every path to an output is cut by the "
                         f"stop-gradient {', '.join(sorted(flow))}.")
        else:
            lines.append("No gradient reaches it: no differentiable path to an output (its "
                         "outputs reach no output, or only through integer/boolean tensors).")
        if weighted and trainable is not False:
            lines.append("Its trainable weights will not change in training: consider freezing "
                         "them (faster, and BatchNorm statistics stop moving).")
    return " ".join(lines)


def gradient_text(document, node) -> tuple[str, str]:
    """(short text, kind) for the Gradient column; kind is a style key or ''."""
    if isinstance(node, WeightNode) and not node.freezable:
        return "—", ""
    if isinstance(node, LayerNode) and node.class_name == "InputLayer":
        return "input", ""
    if isinstance(node, LayerNode) and not has_freezable(node):
        return ("passes", "") if document.flow_state(node) == LIVE else ("cut off", "no_gradient")
    state = document.receives_gradient(node)
    if state is True:
        return "receives", "receives"
    if state == PARTIAL:
        return "partial", "partial"
    if document.trainable_state(node) is False:
        return "none", ""  # frozen: expected, no warning
    return "none", "no_gradient"


# --- per-edit cache of derived state ------------------------------------------------------
class StateCache:
    """Read-through cache of the document's derived state, cleared after every edit.

    Same answers as the `Document` methods of the same names (tests check it), computed
    once per edit: painting a 771-layer tree asks them many times per row, and the top
    row aggregates over every weight. `WeightNode.size` (TensorFlow shapes + numpy,
    ~30 µs a call) is cached for the document's lifetime.
    """

    def __init__(self, document):
        self.document = document
        self._sizes: dict[int, int] = {}
        self._shapes: dict[int, str] = {}
        self._results: dict = {}

    def warm(self) -> StateCache:
        """Computes the static facts (weight sizes, output shapes) now; a loading worker
        calls this so the GUI thread does not pay for it when the tree first shows."""
        for node in self.document.root.walk():
            self.output_shape(node)
            for weight in node.weights:
                self.size(weight)
        self.document.flow_state(self.document.root)  # the core caches its graph analysis
        return self

    def output_shape(self, node: LayerNode) -> str:
        shape = self._shapes.get(id(node))
        if shape is None:
            shape = self._shapes[id(node)] = output_shape(node)
        return shape

    def invalidate(self) -> None:
        """Forget results that depend on the edit state (call after every edit)."""
        self._results.clear()

    def _memo(self, kind: str, node, compute):
        key = (kind, id(node))
        try:
            return self._results[key]
        except KeyError:
            value = self._results[key] = compute()
            return value

    def size(self, weight: WeightNode) -> int:
        key = id(weight)
        size = self._sizes.get(key)
        if size is None:
            size = self._sizes[key] = weight.size
        return size

    def trainable_state(self, node):
        return self._memo("trainable", node, lambda: self.document.trainable_state(node))

    def flow_state(self, node: LayerNode):
        return self._memo("flow", node, lambda: self.document.flow_state(node))

    def receives_gradient(self, node):
        """As `Document.receives_gradient`, with the flow state looked up once per layer."""
        if isinstance(node, WeightNode):
            return self.document.is_weight_trainable(node) and \
                self.flow_state(node.layer) == LIVE
        return self._memo("receives", node, lambda: self._receives_layer(node))

    def _receives_layer(self, node: LayerNode):
        states = {self.receives_gradient(w) for w in node.all_weights() if w.freezable}
        if not states:
            return False
        return states.pop() if len(states) == 1 else PARTIAL

    def counts(self, node) -> tuple[int, int]:
        """(params, trainable params) of a layer, container or weight."""
        return self._memo("counts", node, lambda: self._counts(node))

    def _counts(self, node) -> tuple[int, int]:
        weights = [node] if isinstance(node, WeightNode) else node.all_weights()
        params = trainable = 0
        for weight in weights:
            size = self.size(weight)
            params += size
            if self.document.is_weight_trainable(weight):
                trainable += size
        return params, trainable

    def receiving(self, node=None) -> int:
        """Parameters at or below `node` (default: all) that receive gradient."""
        node = self.document.root if node is None else node
        return self._memo("receiving", node, lambda: sum(
            self.size(w) for w in node.all_weights() if self.receives_gradient(w)))


# --- weights -------------------------------------------------------------------------------
MAX_STAT_ELEMENTS = 50_000_000


def weight_stats(weight: WeightNode) -> dict | None:
    """min/max/mean/std of a weight's values (None if too big or unreadable)."""
    if weight.size > MAX_STAT_ELEMENTS:
        return None
    try:
        values = np.asarray(weight.variable.numpy(), dtype=np.float64)
    except Exception:  # noqa: BLE001 - non-numeric or unreadable variables get no stats
        return None
    if values.size == 0:
        return None
    stats = {"min": values.min(), "max": values.max(), "mean": values.mean(),
             "std": values.std()}
    return {k: float(v) for k, v in stats.items() if math.isfinite(float(v))} | {
        "nonfinite": int(values.size - np.isfinite(values).sum())}


# --- stop-gradient insertion points --------------------------------------------------------
def stop_point_table(document) -> dict[str, list[str]]:
    """Layer path -> its insertion point addresses (none in a generic SavedModel)."""
    from freezestudio.core.edits.stop_gradient import addresses_by_layer

    return addresses_by_layer(document)
