"""Facts about tree nodes the GUI shows, read from the core (Qt-free, TF-free at import).

These are thin read-only adapters over the document's answers (which it computes once
per edit): gradient texts and reasons, weight statistics and stop-gradient insertion
points.
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


# --- preparing a document off the GUI thread ----------------------------------------------
def prepare(document):
    """Computes what the tree shows first (output shapes, the gradient-flow analysis, the
    totals) now, so that a loading worker pays for it instead of the GUI thread.

    Returns:
        The document.
    """
    for node in document.root.walk():
        _ = node.output_shape
    document.receiving_params()
    document.counts()
    return document


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
