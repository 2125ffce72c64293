"""The details pane: what the selected layer or weight is, does and holds."""

from __future__ import annotations

import json
from html import escape

from PySide6.QtCore import QUrl, Signal, Slot
from PySide6.QtWidgets import QTextBrowser, QWidget

from freezestudio.core.model import layer_graph
from freezestudio.core.model.document import PARTIAL
from freezestudio.core.model.tree import LayerNode, WeightNode, format_shape
from freezestudio.gui.editor import node_info

MAX_CONFIG_CHARS = 6000
MAX_WEIGHT_ROWS = 60
UPSTREAM_LINK = "freezestudio:freeze-upstream"

_STATE = {True: "trainable", False: "frozen", PARTIAL: "partly frozen"}


def _num(value: float) -> str:
    return f"{value:.4g}"


def _bn_note(document, node: LayerNode) -> str:
    if node.class_name != "BatchNormalization":
        return ""
    if not document.layer_flag(node):
        return ("<p class=note><b>Inference mode.</b> A frozen BatchNormalization normalises "
                "with its stored moving mean/variance, and they stop updating, also during "
                "training.</p>")
    return ("<p class=note><b>Training mode.</b> While trainable, BatchNormalization normalises "
            "with batch statistics in training and keeps updating its moving mean/variance. "
            "Freeze it to keep them fixed (inference mode).</p>")


def _stop_section(document, node: LayerNode, points: list[str]) -> str:
    if not points:
        return ""
    active = [p for p in points if p in document.stop_points]
    marks = {p: "<b>stop-gradient</b>" if p in active else "off" for p in points}
    rows = "".join(f"<li><code>{escape(p)}</code>: {marks[p]}</li>" for p in points)
    html = f"<h3>Stop-gradient points</h3><ul>{rows}</ul>"
    if active:
        html += ("<p class=note>A stop-gradient alone does not stop BatchNorm statistics "
                 "upstream from updating in training mode, and plain Keras <code>fit</code> "
                 "still computes the cut-off gradients (FreezeStudio's trainer skips them). "
                 "Freezing the upstream part fixes both and lets training cache its "
                 "features.</p>"
                 f"<p><a href='{UPSTREAM_LINK}'>Freeze everything upstream of "
                 f"{escape(', '.join(active))}</a></p>")
    return html


def _weights_table(document, weights: list[WeightNode], stats_of) -> str:
    """One short paragraph per weight (a wide table does not fit a side pane)."""
    if not weights:
        return ""
    items = []
    for weight in weights[:MAX_WEIGHT_ROWS]:
        stats = stats_of(weight) or {}
        state = "fixed" if not weight.freezable else _STATE[document.is_weight_trainable(weight)]
        grad = node_info.gradient_text(document, weight)[0]
        line = (f"<code><b>{escape(weight.key)}</b></code> {format_shape(weight.shape)}"
                f" {weight.dtype} · {state}" + (f" · gradient: {grad}" if grad != "—" else ""))
        values = " · ".join(f"{k} {_num(stats[k])}" for k in ("min", "max", "mean", "std")
                            if k in stats)
        items.append(f"<p style='margin:4px 0'>{line}" +
                     (f"<br><small>{values}</small>" if values else "") + "</p>")
    more = (f"<p>… and {len(weights) - MAX_WEIGHT_ROWS} more</p>"
            if len(weights) > MAX_WEIGHT_ROWS else "")
    return "<h3>Weights</h3>" + "".join(items) + more


def _config(node: LayerNode) -> str:
    """The layer's Keras config (containers: only a summary, their config is the graph)."""
    layer = node.layer
    if layer is None or not hasattr(layer, "get_config"):
        return ""
    if node.is_container:
        return (f"<h3>Structure</h3><p>{len(node.children)} layers, "
                f"{sum(1 for _ in node.all_weights()):,} weights</p>")
    try:
        config = layer.get_config()
    except Exception:  # noqa: BLE001 - some layers cannot describe themselves
        return ""
    config.pop("trainable", None)  # shown above from the document, and it changes
    text = json.dumps(config, indent=1, default=str)
    if len(text) > MAX_CONFIG_CHARS:
        text = text[:MAX_CONFIG_CHARS] + "\n…"
    return f"<h3>Config</h3><pre>{escape(text)}</pre>"


def static_facts(document, node: LayerNode) -> dict:
    """What does not change while editing: graph neighbours, output shape, config."""
    inbound, outbound = layer_graph.neighbours(document, node)
    return {"inbound": inbound, "outbound": outbound,
            "calls": len(layer_graph.layer_calls(document, node)),
            "shape": node.output_shape, "config": _config(node)}


def layer_html(document, node: LayerNode, points: list[str],
               stats_of=node_info.weight_stats, static_of=None) -> str:
    counts = document.counts(node)
    params, trainable = counts.params, counts.trainable
    state = _STATE[document.trainable_state(node)]
    title = escape(node.name) + (" (top model)" if node.parent is None else "")
    parts = [f"<h2>{title}</h2>",
             f"<p><b>{escape(node.class_name)}</b> · <code>{escape(node.path or '/')}</code></p>",
             f"<p>{params:,} params, {trainable:,} trainable · <b>{state}</b>"]
    if node.parent is None:
        parts.append(f" · {document.receiving_params():,} receive gradient<br>"
                     f"{escape(str(document.source_path))} ({escape(document.source_format)})")
    parts.append("</p>")
    parts.append(f"<p>{escape(node_info.gradient_reason(document, node))}</p>")
    parts.append(_bn_note(document, node))
    parts.append(_stop_section(document, node, points))
    static = static_of(node) if static_of else static_facts(document, node)
    inbound, outbound, calls = static["inbound"], static["outbound"], static["calls"]
    if inbound or outbound:
        parts.append("<h3>Connections</h3><p>")
        parts.append(f"Inbound: {escape(', '.join(inbound)) or '–'}<br>"
                     f"Outbound: {escape(', '.join(outbound)) or '–'}")
        if calls > 1:
            parts.append(f"<br>Called {calls} times (shared layer)")
        parts.append("</p>")
    shape = static["shape"]
    if shape:
        parts.append(f"<p>Output shape: <code>{escape(shape)}</code></p>")
    parts.append(_weights_table(document, node.weights, stats_of))
    parts.append(static["config"])
    return "".join(parts)


def weight_html(document, weight: WeightNode, stats_of=node_info.weight_stats) -> str:
    stats = stats_of(weight)
    state = "fixed (not trained by gradient)" if not weight.freezable else \
        _STATE[document.is_weight_trainable(weight)]
    parts = [f"<h2>{escape(weight.key)}</h2>",
             f"<p>weight of <b>{escape(weight.layer.name)}</b> ({escape(weight.layer.class_name)})"
             f" · <code>{escape(weight.id)}</code></p>",
             f"<p>shape {format_shape(weight.shape)} · {weight.dtype} · "
             f"{weight.size:,} values · <b>{state}</b></p>",
             f"<p>{escape(node_info.gradient_reason(document, weight))}</p>"]
    if stats:
        parts.append("<table cellpadding=3>" + "".join(
            f"<tr><th align=left>{k}</th><td>{_num(stats[k])}</td></tr>"
            for k in ("min", "max", "mean", "std") if k in stats) + "</table>")
        if stats.get("nonfinite"):
            parts.append(f"<p class=note>{stats['nonfinite']:,} values are NaN or infinite.</p>")
    return "".join(parts)


STYLE = ("<style>h2{margin-bottom:2px} h3{margin-top:12px;margin-bottom:2px} "
         "th{text-align:left;padding-right:8px} td{padding-right:8px} "
         "p.note{font-style:italic}</style>")


class DetailsPane(QTextBrowser):
    """Shows the selected node; refreshes on edits.

    Signals:
        freeze_upstream_requested(list): the active stop points of the shown layer.
    """

    freeze_upstream_requested = Signal(list)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setOpenLinks(False)
        self.anchorClicked.connect(self._on_link)
        self.document_ = None
        self.node = None
        self._points: list[str] = []
        self._stats: dict[int, dict | None] = {}
        self._static: dict[int, dict] = {}
        self.setMinimumWidth(260)
        self.show_node(None, None)

    def show_node(self, document, node, points: list[str] | None = None) -> None:
        if document is not self.document_:
            self._stats.clear()
            self._static.clear()
        self.document_, self.node, self._points = document, node, points or []
        self.refresh()

    @Slot()
    def forget_values(self) -> None:
        """Weight values changed (a run, its undo): statistics are computed afresh."""
        self._stats.clear()

    def _static_of(self, node: LayerNode) -> dict:
        if id(node) not in self._static:
            self._static[id(node)] = static_facts(self.document_, node)
        return self._static[id(node)]

    def _stats_of(self, weight: WeightNode) -> dict | None:
        """Weight statistics, computed once per variable (edits do not change values)."""
        key = id(weight.variable)
        if key not in self._stats:
            self._stats[key] = node_info.weight_stats(weight)
        return self._stats[key]

    def refresh(self) -> None:
        document, node = self.document_, self.node
        if document is None or node is None:
            self.setHtml(STYLE + "<p><i>Select a layer or weight to see its details.</i></p>")
            return
        bar = self.verticalScrollBar().value()
        if isinstance(node, WeightNode):
            html = weight_html(document, node, self._stats_of)
        else:
            html = layer_html(document, node, self._points, self._stats_of, self._static_of)
        self.setHtml(STYLE + html)
        self.verticalScrollBar().setValue(bar)

    def _on_link(self, url: QUrl) -> None:
        if url.toString() == UPSTREAM_LINK and self.document_ is not None:
            active = [p for p in self._points if p in self.document_.stop_points]
            if active:
                self.freeze_upstream_requested.emit(active)
