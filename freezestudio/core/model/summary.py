"""The document as data: the `inspect --json` structure (docs/architecture.md) and text."""

from __future__ import annotations

from freezestudio.core.graph.functional import graph_of
from freezestudio.core.model.document import Document
from freezestudio.core.model.tree import LayerNode


def _lora(document: Document) -> dict:
    """Adapted kernel id -> `{"rank", "alpha"}` of its LoRA adapter."""
    return {a.id: {"rank": a.rank, "alpha": a.alpha} for a in document.adapters()}


def node_dict(document: Document, node: LayerNode, lora: dict | None = None) -> dict:
    """One NODE of `inspect --json`; an adapted kernel's weight entry also has
    `"lora": {"rank", "alpha"}`."""
    counts = document.counts(node)
    lora = _lora(document) if lora is None else lora
    return {
        "path": node.path,
        "name": node.name,
        "class": node.class_name,
        "trainable": document.trainable_state(node),
        "receives_gradient": document.receives_gradient(node),
        "stop_gradient_after": document.stop_gradient_after(node),
        "params": counts.params,
        "trainable_params": counts.trainable,
        "weights": [
            {
                "id": w.id,
                "shape": list(w.shape),
                "dtype": w.dtype,
                "trainable": document.is_weight_trainable(w),
                "receives_gradient": document.receives_gradient(w),
                **({"lora": lora[w.id]} if w.id in lora else {}),
            }
            for w in node.weights
        ],
        "children": [node_dict(document, child, lora) for child in node.children],
    }


def document_dict(document: Document) -> dict:
    totals = document.counts()
    return {
        "file": str(document.source_path),
        "format": document.source_format,
        "model": node_dict(document, document.root),
        "totals": {
            "params": totals.params,
            "trainable_params": totals.trainable,
            "non_trainable_params": totals.non_trainable,
            "receiving_gradient_params": document.receiving_params(),
        },
    }


def _holds_layers_without_graph(node: LayerNode) -> bool:
    """A subclassed model: it holds layers but has no layer graph."""
    return node.is_container and node.layer is not None and bool(node.children) and \
        graph_of(node.layer) is None


def _mark(state) -> str:
    return {True: "trainable", False: "frozen"}.get(state, "partial")


def document_text(document: Document, show_weights: bool = False) -> str:
    """An indented tree: name, class, freeze state, gradient, params."""
    lines = []
    lora = _lora(document)

    def visit(node: LayerNode, depth: int) -> None:
        counts = document.counts(node)
        extras = []
        receiving = document.receiving_params(node)
        if receiving < counts.trainable:
            extras.append("no gradient" if receiving == 0 else "partly no gradient")
        if node.class_name == "BatchNormalization" and not document.layer_flag(node):
            extras.append("inference mode")
        if document.stop_gradient_after(node):
            extras.append("stop-gradient after")
        adapted = [w.key for w in node.weights if w.id in lora]
        if adapted:
            extras.append("LoRA " + ", ".join(
                f"{key} rank {lora[f'{node.path}:{key}']['rank']}" for key in adapted))
        if _holds_layers_without_graph(node):
            extras.append("no layer graph: no stop-gradient points inside")
        label = node.name if depth else f"{node.name} (model)"
        state = _mark(document.trainable_state(node))
        lines.append(f"{'  ' * depth}{label}  {node.class_name}  {state}"
                     f"  {counts.params:,} params ({counts.trainable:,} trainable)"
                     + (f"  [{', '.join(extras)}]" if extras else ""))
        if show_weights:
            for weight in node.weights:
                state = _mark(document.is_weight_trainable(weight))
                lines.append(f"{'  ' * (depth + 1)}:{weight.key}  {list(weight.shape)} "
                             f"{weight.dtype}  {state}")
        for child in node.children:
            visit(child, depth + 1)

    visit(document.root, 0)
    totals = document.counts()
    lines.append(f"Total params: {totals.params:,}  trainable: {totals.trainable:,}  "
                 f"non-trainable: {totals.non_trainable:,}  "
                 f"receiving gradient: {document.receiving_params():,}")
    if lora:
        share = totals.trainable / totals.params if totals.params else 0.0
        lines.append(f"LoRA adapters: {len(lora)}, trainable share {share:.1%}")
    return "\n".join(lines)
