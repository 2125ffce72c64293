"""What each cell of the layer tree shows: a mixin of `LayerTreeModel`.

Everything here reads the document, which answers each question once per edit; the
cells it makes are cached by the model until a change touches them.
"""

from __future__ import annotations

from PySide6.QtCore import QModelIndex, Qt
from PySide6.QtGui import QGuiApplication, QPalette

from freezestudio.core.model.document import PARTIAL
from freezestudio.core.model.tree import LayerNode, WeightNode, format_shape
from freezestudio.gui.common import style
from freezestudio.gui.editor import node_info

COLUMNS = ("Name", "Class", "Output shape", "Params", "Trainable", "Freeze", "Stop gradient",
           "Gradient", "Adapter", "LR \u00d7")
NAME, CLASS, SHAPE, PARAMS, TRAINABLE, FREEZE, STOP, GRADIENT, ADAPTER, LR = range(len(COLUMNS))
NODE_ROLE = Qt.ItemDataRole.UserRole + 1
POINTS_ROLE = Qt.ItemDataRole.UserRole + 2  # [(address, active)] of the Stop gradient column
KIND_ROLE = Qt.ItemDataRole.UserRole + 3  # style key of the row state

HEADER_TIPS = {
    NAME: "Layer, nested model or weight",
    SHAPE: "Output shape of the layer (first call); shape of a weight",
    PARAMS: "Number of parameters",
    TRAINABLE: "Parameters that are trainable (Keras's own count)",
    FREEZE: "Ticked = frozen (trainable=False). Containers show a partial tick when mixed.",
    STOP: "Stop-gradient points: one toggle per output/call of the layer. Forward pass "
          "unchanged; no gradient flows back through it.",
    GRADIENT: "Whether gradient from the outputs reaches the weights (hover for the reason)",
    ADAPTER: "LoRA adapter rank (Keras's enable_lora): double-click to set; 0 removes it. "
             "Empty where the layer cannot take one.",
    LR: "Learning-rate multiplier: scales the step of these weights (double-click a layer or "
        "container to edit). Grey: inherited from a container, or the default 1.",
}
_CHECK = {True: Qt.CheckState.Unchecked, False: Qt.CheckState.Checked,
          PARTIAL: Qt.CheckState.PartiallyChecked}
_NUMERIC = (PARAMS, TRAINABLE)
_ALL_ROLES = ()
_ROOT = QModelIndex()
_DISPLAY = int(Qt.ItemDataRole.DisplayRole)
_CHECK_ROLE = int(Qt.ItemDataRole.CheckStateRole)
_DECORATION = int(Qt.ItemDataRole.DecorationRole)
_BACKGROUND = int(Qt.ItemDataRole.BackgroundRole)
_TOOLTIP = int(Qt.ItemDataRole.ToolTipRole)
_ALIGN = int(Qt.ItemDataRole.TextAlignmentRole)
_FONT = int(Qt.ItemDataRole.FontRole)
_FOREGROUND = int(Qt.ItemDataRole.ForegroundRole)
_EDIT = int(Qt.ItemDataRole.EditRole)
_RIGHT = int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)



class CellsMixin:
    """Cell contents, tooltips and flags; expects `document`, `_cache`, `_matches`,
    `_points`, `_stops`, `_nodes`, `_bold` and `_italic` from the model."""

    def _cached(self, node, key, compute):
        cache_key = (id(node), key)
        try:
            return self._cache[cache_key]
        except KeyError:
            value = self._cache[cache_key] = compute()
            return value

    def stop_points(self, node) -> list[str]:
        """Insertion point addresses of a layer ([] for weights and pointless layers)."""
        if isinstance(node, WeightNode) or self.document is None:
            return []
        if self._points is None:
            self._points = node_info.stop_point_table(self.document)
        return self._points.get(node.path, [])

    def row_kind(self, node) -> str:
        """The style key for a row: frozen, partial, no_gradient, trainable or ''."""
        return self._cached(node, "kind", lambda: self._row_kind(node))

    def _row_kind(self, node) -> str:
        document = self.document
        if isinstance(node, WeightNode) and not node.freezable:
            return ""
        state = document.trainable_state(node)
        if state is False:
            return style.FROZEN
        if state == PARTIAL:
            return style.PARTIAL
        if isinstance(node, LayerNode) and not node_info.has_freezable(node):
            return "" if node_info.gradient_text(document, node)[1] == "" else style.NO_GRADIENT
        return style.TRAINABLE if document.receives_gradient(node) is not False \
            else style.NO_GRADIENT

    def gradient_signature(self, node, fresh: bool = False) -> tuple:
        """What a row shows that stop-gradient points change: its state (colour, icon)
        and Gradient column (`fresh`: computed now, not the cached one)."""
        if fresh:
            return self._row_kind(node), node_info.gradient_text(self.document, node)
        return self._cached(node, "signature", lambda: self.gradient_signature(node, True))

    def _points_touched(self) -> set[int]:
        """Ids of the cached rows a change of stop-gradient points changed: the layers
        whose points changed, the rows whose `gradient_signature` differs now."""
        stops, self._stops = self._stops, set(self.document.stop_points)
        moved = {a.partition("[")[0] for a in stops ^ self._stops}
        touched = set()
        for key in {key for key, _kind in self._cache}:
            node, signature = self._nodes.get(key), self._cache.get((key, "signature"))
            if node is None or signature is None or getattr(node, "path", None) in moved \
                    or signature != self.gradient_signature(node, fresh=True):
                touched.add(key)
        return touched

    def _cell(self, node, column: int) -> dict:
        self.gradient_signature(node)  # kept with the cells: a points change compares it
        cell = {
            _DISPLAY: self._display(node, column),
            _CHECK_ROLE: self._check_state(node, column),
            _DECORATION: self._decoration(node, column),
            _BACKGROUND: self._background(node),
        }
        if column in _NUMERIC or column == LR:
            cell[_ALIGN] = _RIGHT
        if column == NAME:
            if isinstance(node, WeightNode):
                cell[_FONT] = self._italic
            elif node.is_container:
                cell[_FONT] = self._bold
        if column == LR:
            value = self.multipliers().value(node)
            cell[_EDIT] = f"{value:g}" if isinstance(value, float) else "1"
            if not self.multipliers().explicit(node):
                cell[_FOREGROUND] = QGuiApplication.palette().color(
                    QPalette.ColorRole.PlaceholderText)
        return cell

    def multipliers(self):
        """The LR column's `MultiplierView`, made once per edit."""
        from freezestudio.core.edits.fine_tuning import MultiplierView

        return self._cached(self.document.root, "lr", lambda: MultiplierView(self.document))

    def _display(self, node, column: int) -> str:
        weight = isinstance(node, WeightNode)
        if column == NAME:
            return node.key if weight else node.name
        if column == CLASS:
            return f"{node.dtype} weight" if weight else node.class_name
        if column == SHAPE:
            if weight:
                return format_shape(node.shape)
            return node.output_shape
        if column in _NUMERIC:
            counts = self.document.counts(node)
            if counts.params == 0:
                return ""
            return f"{counts.params if column == PARAMS else counts.trainable:,}"
        if column == FREEZE:
            kind = self.row_kind(node)
            if weight and not node.freezable:
                return "fixed"
            return {style.FROZEN: "frozen", style.PARTIAL: "partly"}.get(kind, "")
        if column == GRADIENT:
            return node_info.gradient_text(self.document, node)[0]
        if column == ADAPTER:
            return self._adapter_text(node)
        if column == LR:
            value = self.multipliers().value(node)
            return "" if value is None else (value if isinstance(value, str) else f"{value:g}")
        return ""

    def _adapters_at(self, node) -> list:
        """The live adapters of a kernel row, or inside a layer/container."""
        adapters = self.document.adapters()
        if isinstance(node, WeightNode):
            return [a for a in adapters if a.kernel.variable is node.variable]
        inside = {id(n) for n in node.walk()}
        return [a for a in adapters if id(a.kernel.layer) in inside]

    def _takes_adapter(self, node) -> bool:
        from freezestudio.core.model.adapters import lora_layers

        if isinstance(node, WeightNode):
            return any(row.variable is node.variable for _, row in lora_layers(node.layer))
        return any(lora_layers(n) for n in node.walk())

    def _adapter_text(self, node) -> str:
        ranks = sorted({a.rank for a in self._adapters_at(node)})
        if not ranks:
            return ""
        return ", ".join(str(r) for r in ranks)

    def _check_state(self, node, column: int):
        if column == FREEZE:
            if isinstance(node, WeightNode) and not node.freezable:
                return Qt.CheckState.Checked
            return _CHECK[self.document.trainable_state(node)]
        if column == STOP:
            points = self.stop_points(node)
            if not points:
                return None
            stops = set(self.document.stop_points)
            active = sum(p in stops for p in points)
            if active == 0:
                return Qt.CheckState.Unchecked
            return Qt.CheckState.Checked if active == len(points) \
                else Qt.CheckState.PartiallyChecked
        return None

    def _decoration(self, node, column: int):
        if column == NAME:
            kind = self.row_kind(node)
            return style.icon(kind) if kind else style.icon("blank")
        if column == GRADIENT:
            kind = self._cached(node, "gradkind",
                                lambda: node_info.gradient_text(self.document, node)[1])
            return style.icon(kind) if kind else None
        return None

    def _background(self, node):
        if id(node) in self._matches:
            return style.tint("match")
        kind = self.row_kind(node)
        if kind in (style.FROZEN, style.NO_GRADIENT):
            return style.tint(kind)
        return None

    def _tooltip(self, node, column: int):
        document = self.document
        if column == NAME:
            address = node.id if isinstance(node, WeightNode) else (node.path or "(top model)")
            return address
        if column == FREEZE:
            if isinstance(node, WeightNode) and not node.freezable:
                return "Never trained by gradient (moving statistic or counter)"
            state = document.trainable_state(node)
            text = {True: "Trainable: tick to freeze", False: "Frozen: untick to unfreeze",
                    PARTIAL: "Partly frozen: tick to freeze all of it"}[state]
            if node_info.owner(node).class_name == "BatchNormalization" and \
                    isinstance(node, LayerNode) and not document.layer_flag(node):
                text += " (frozen BatchNormalization runs in inference mode)"
            return text
        if column == STOP:
            points = self.stop_points(node)
            if not points:
                return None
            stops = set(document.stop_points)
            lines = [f"{'■' if p in stops else '□'} {p}" for p in points]
            return "Stop gradient after this output (click to toggle):\n" + "\n".join(lines)
        if column == GRADIENT:
            return node_info.gradient_reason(self.document, node)
        if column == ADAPTER and self._takes_adapter(node):
            adapters = self._adapters_at(node)
            lines = [f"{a.id}: rank {a.rank}, alpha {a.alpha:g}" for a in adapters[:8]]
            return "\n".join(lines or ["No LoRA adapter: double-click to add one (a rank)"])
        return None

    def _compute_flags(self, node, index):
        flags = Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable
        if index.column() == FREEZE and not (isinstance(node, WeightNode) and not node.freezable):
            flags |= Qt.ItemFlag.ItemIsUserCheckable
        if index.column() == STOP and self.stop_points(node):
            flags |= Qt.ItemFlag.ItemIsUserCheckable
        if index.column() == ADAPTER and self._takes_adapter(node):
            flags |= Qt.ItemFlag.ItemIsEditable
        if index.column() == LR and isinstance(node, LayerNode) and \
                node_info.has_freezable(node):
            flags |= Qt.ItemFlag.ItemIsEditable
        return flags


def parse_rank(value) -> int | None:
    """An Adapter cell's edit as a rank (0: none), or None for anything else."""
    text = str(value).strip()
    if text in ("", "-"):
        return 0
    return int(text) if text.isdigit() else None

