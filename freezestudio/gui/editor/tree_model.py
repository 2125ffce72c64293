"""The layer tree as a QAbstractItemModel over the core document (no copy of the state).

Rows are the document's own `LayerNode`/`WeightNode` objects (the index's internal
pointer); every cell is read from the document when asked, through a cache of cells.
Ticking a checkbox does not touch the document directly: it asks the `Editor`, which runs
the core operation as an undoable command. The document's `DocumentChange` then tells the
model what to refresh: a freeze drops the cells of the nodes it touched (their subtrees
and ancestors), a stop-gradient change the cells of the rows whose gradient state or
points it changed (each cached row's `gradient_signature` is compared), a change of
weight values drops none (no cell shows values); `dataChanged` goes out per parent for
those rows instead of a model reset.

The top model is the single top-level row; a layer's children are its nested layers
followed by its weights.
"""

from __future__ import annotations

import weakref

from PySide6.QtCore import (
    QAbstractItemModel,
    QModelIndex,
    QPersistentModelIndex,
    Qt,
    QTimer,
    Signal,
)
from PySide6.QtGui import QFont

from freezestudio.core.model.changes import ChangeKind, DocumentChange
from freezestudio.core.model.tree import WeightNode
from freezestudio.gui.editor.row_notifier import RowNotifier
from freezestudio.gui.editor.tree_cells import (  # noqa: F401 - the model's public names
    _ALL_ROLES,
    _NUMERIC,
    _ROOT,
    _TOOLTIP,
    ADAPTER,
    CLASS,
    COLUMNS,
    FREEZE,
    GRADIENT,
    HEADER_TIPS,
    KIND_ROLE,
    LR,
    NAME,
    NODE_ROLE,
    PARAMS,
    POINTS_ROLE,
    SHAPE,
    STOP,
    TRAINABLE,
    CellsMixin,
    parse_rank,
)


def _affected_rows(nodes) -> set[int]:
    """Ids of the rows a freeze of `nodes` can change: each node with everything inside it
    (layers and weights) and every node around it (their aggregates)."""
    touched: set[int] = set()
    for node in nodes:
        layer = node.layer if isinstance(node, WeightNode) else node
        touched.add(id(node))
        if not isinstance(node, WeightNode):
            for sub in node.walk():
                touched.add(id(sub))
                touched.update(id(w) for w in sub.weights)
        touched.add(id(layer))
        touched.update(id(up) for up in layer.ancestors())
    return touched


def _check_value(value) -> Qt.CheckState:
    if isinstance(value, Qt.CheckState):
        return value
    return Qt.CheckState(int(value))


class LayerTreeModel(CellsMixin, QAbstractItemModel):
    """Tree model of a `Document`; edits go through `editor` (an `undo.Editor`).

    Signals:
        refreshed(): after the model re-read the document (an edit, undo, redo).
        values_changed(): weight values changed (nothing in the tree shows them): a run,
            its undo, or an adapter edit (a merge writes kernels, its undo restores them).
        rows_about_to_rebuild(): adapters were added or removed: the model resets over
            the same document next (the old rows are still valid indexes now).
        rows_rebuilt(): after that reset (views show again what they kept).
    """

    refreshed = Signal()
    values_changed = Signal()
    rows_about_to_rebuild = Signal()
    rows_rebuilt = Signal()

    def __init__(self, editor, parent=None):
        super().__init__(parent)
        self._editor = weakref.ref(editor)  # no model->editor->stack->model cycle
        self.document = None
        self._rows: dict[int, int] = {}
        self._nodes: dict[int, object] = {}  # id -> node, every row
        self._stops: set[str] = set()  # the points the cells show
        self._held: list = []  # every row's node: index pointers stay valid until a reset
        self._parents: list = []
        self._cache: dict = {}
        self._cells: dict = {}
        self._flags: dict = {}
        self._points: dict[str, list[str]] | None = None
        self._matches: set[int] = set()
        self._listener = None
        self._dirty = False
        self.row_notifier = RowNotifier(self._notify_rows, self)
        self._touched: set[int] | None = set()  # ids of rows to refresh; None: all
        self._bold = QFont()
        self._bold.setBold(True)
        self._italic = QFont()
        self._italic.setItalic(True)

    @property
    def editor(self):
        return self._editor()

    # --- document ---------------------------------------------------------------------
    def set_document(self, document) -> None:
        """Shows another document, or None (a model reset: the only one a document gets).

        The previous document's listener is removed."""
        self.beginResetModel()
        if self.document is not None and self._listener is not None:
            self.document.remove_listener(self._listener)
        self._listener = None
        self.document = document
        self._cache.clear()
        self._cells.clear()
        self._flags.clear()
        self._points = None
        self._matches = set()
        self._dirty, self._touched = False, set()
        self.row_notifier.clear()
        self._rows = {}
        self._parents = []
        held = []
        if document is not None:
            self._stops = set(document.stop_points)
            self._rows[id(document.root)] = 0
            for node in document.root.walk():
                for row, child in enumerate(self.children(node)):
                    self._rows[id(child)] = row
                    held.append(child)
                if node.children or node.weights:
                    self._parents.append(node)
            self._listener = self._make_listener(document)
            document.add_listener(self._listener)
        self._held = held
        self._nodes = {id(n): n for n in held} | (
            {id(document.root): document.root} if document is not None else {})
        self.endResetModel()
        self.refreshed.emit()

    def _make_listener(self, document):
        """A document listener that does not keep the model alive (no model<->document
        cycle: the model is freed as soon as its owner lets go of it)."""
        model_ref = weakref.ref(self)

        def listener(change: DocumentChange):
            model = model_ref()
            if model is not None and model.document is document:
                model.apply_change(change)
        return listener

    def apply_change(self, change: DocumentChange) -> None:
        """Forgets the cells `change` affects now; repaints them at the next `flush()`."""
        if change.kind == ChangeKind.ADAPTERS:  # rows came or went: the tree is rebuilt
            self.values_changed.emit()  # a merge (or its undo) wrote kernels; new variables
            self.rows_about_to_rebuild.emit()  # the removed rows' nodes are still held
            self.set_document(self.document)
            self.rows_rebuilt.emit()
            return
        if change.kind == ChangeKind.WEIGHTS:
            self.values_changed.emit()  # nothing in the tree shows values; details do
            self.refreshed.emit()
            return
        if self._touched is not None and (change.kind == ChangeKind.POINTS or (
                change.kind == ChangeKind.TRAINABLE and change.nodes)):
            touched = self._points_touched() if change.kind == ChangeKind.POINTS \
                else _affected_rows(change.nodes)
            for cache in (self._cache, self._cells):
                for key in [k for k in cache if k[0] in touched]:
                    del cache[key]
            self._touched |= touched
            self._schedule_flush()
        else:
            self.invalidate()

    def invalidate(self) -> None:
        """Forget every cached cell now; repaint at the next `flush()` (the undo stack
        flushes after each command; other edits at the next event loop)."""
        self._cache.clear()
        self._cells.clear()
        self._touched = None
        self._schedule_flush()

    def _schedule_flush(self) -> None:
        if not self._dirty:
            self._dirty = True
            QTimer.singleShot(0, self, self.flush)

    def _touched_rows(self, parent, first: int, final: int, touched: set):
        """The (first, last) rows of `parent` in first..final that were touched, or None."""
        owner = self.node(parent)
        children = self.children(owner) if owner is not None else [self.document.root]
        rows = [row for row in range(first, min(final, len(children) - 1) + 1)
                if id(children[row]) in touched]
        return (rows[0], rows[-1]) if rows else None

    def set_ranges_provider(self, provider) -> None:
        """`provider()` yields (parent index, first row, last row) runs a view shows.

        `flush` then notifies only those rows: on a 771-layer model one dataChanged per
        parent costs ~0.6 ms each in QTreeView, and a view reads rows it did not show
        afresh when they scroll or expand into view. Without a provider every parent's
        rows are notified.
        """
        self._ranges_provider = provider

    def _all_ranges(self):
        for node in self._parents:
            yield self._index_of(node), 0, len(node.children) + len(node.weights) - 1

    def flush(self) -> None:
        """Emits dataChanged for the (shown) rows the document changed since, a batch of
        rows at a time (`row_notifier.py`)."""
        if not self._dirty or self.document is None:
            return
        touched, self._dirty, self._touched = self._touched, False, set()
        provider = getattr(self, "_ranges_provider", None) or self._all_ranges
        runs = []
        for parent, first, final in provider():
            if touched is not None:
                rows = self._touched_rows(parent, first, final, touched)
                if rows is None:
                    continue
                first, final = rows
            runs.append((self.node(parent), first, final))
        self.row_notifier.add([*runs, (None, 0, 0)])  # the top row: its totals changed
        self.refreshed.emit()

    def _notify_rows(self, parent, first: int, last: int) -> None:
        """A dataChanged per row: for a range of rows, Qt 6's QTreeView repaints down to
        twice the range's bottom (its update rect takes that bottom as its height)."""
        index = self._index_of(parent) if parent is not None else QModelIndex()
        for row in range(first, last + 1):
            self.dataChanged.emit(self.index(row, 0, index),
                                  self.index(row, len(COLUMNS) - 1, index), _ALL_ROLES)

    def restyle(self) -> None:
        """The palette changed: recompute the colours of every cell."""
        self._cells.clear()
        if self.document is not None:
            self._dirty = True
            self.flush()

    # --- structure --------------------------------------------------------------------
    @staticmethod
    def children(node) -> list:
        if isinstance(node, WeightNode):
            return []
        return [*node.children, *node.weights]

    def node(self, index: QModelIndex | QPersistentModelIndex):
        return index.internalPointer() if index.isValid() else None

    def _index_of(self, node, column: int = 0) -> QModelIndex:
        return self.createIndex(self._rows[id(node)], column, node)

    def index_of(self, node, column: int = 0) -> QModelIndex:
        if self.document is None or id(node) not in self._rows:
            return QModelIndex()
        return self._index_of(node, column)

    def index(self, row: int, column: int, parent=_ROOT) -> QModelIndex:
        if self.document is None or not 0 <= column < len(COLUMNS) or row < 0:
            return QModelIndex()
        if not parent.isValid():
            return self.createIndex(row, column, self.document.root) if row == 0 \
                else QModelIndex()
        children = self.children(parent.internalPointer())
        if row >= len(children):
            return QModelIndex()
        return self.createIndex(row, column, children[row])

    def parent(self, index=_ROOT) -> QModelIndex:
        if not index.isValid():
            return QModelIndex()
        node = index.internalPointer()
        up = node.layer if isinstance(node, WeightNode) else node.parent
        if up is None:
            return QModelIndex()
        return self._index_of(up)

    def rowCount(self, parent=_ROOT) -> int:
        if self.document is None:
            return 0
        if not parent.isValid():
            return 1
        if parent.column() > 0:
            return 0
        node = parent.internalPointer()
        return 0 if isinstance(node, WeightNode) else len(node.children) + len(node.weights)

    def hasChildren(self, parent=_ROOT) -> bool:
        return self.rowCount(parent) > 0

    def columnCount(self, parent=_ROOT) -> int:
        return len(COLUMNS)

    def headerData(self, section, orientation, role=Qt.ItemDataRole.DisplayRole):
        if orientation != Qt.Orientation.Horizontal:
            return None
        if role == Qt.ItemDataRole.DisplayRole:
            return COLUMNS[section]
        if role == Qt.ItemDataRole.ToolTipRole:
            return HEADER_TIPS.get(section)
        if role == Qt.ItemDataRole.TextAlignmentRole and section in _NUMERIC:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None

    # --- cell data ----------------------------------------------------------------------
    def data(self, index, role=Qt.ItemDataRole.DisplayRole):
        if not index.isValid():
            return None
        node = index.internalPointer()
        column = index.column()
        role = int(role)
        key = (id(node), column)
        cell = self._cells.get(key)
        if cell is None:  # every role a view paints, computed once per edit
            cell = self._cells[key] = self._cell(node, column)
        if role in cell:
            return cell[role]
        if role == _TOOLTIP:
            return self._tooltip(node, column)
        if role == NODE_ROLE:
            return node
        if role == POINTS_ROLE and column == STOP:
            stops = set(self.document.stop_points)
            return [(a, a in stops) for a in self.stop_points(node)]
        if role == KIND_ROLE:
            return self.row_kind(node)
        return None

    # --- editing ---------------------------------------------------------------------------
    def flags(self, index):
        if not index.isValid():
            return Qt.ItemFlag.NoItemFlags
        node = index.internalPointer()
        key = (id(node), index.column())
        flags = self._flags.get(key)
        if flags is None:  # flags never change for a document
            flags = self._flags[key] = self._compute_flags(node, index)
        return flags

    def setData(self, index, value, role=Qt.ItemDataRole.EditRole) -> bool:
        if index.isValid() and index.column() == ADAPTER and role == Qt.ItemDataRole.EditRole:
            rank = parse_rank(value)
            return rank is not None and self.editor.set_adapter_rank(index.internalPointer(),
                                                                     rank)
        if index.isValid() and index.column() == LR and role == Qt.ItemDataRole.EditRole:
            try:
                multiplier = float(str(value).strip().lstrip("x\u00d7"))
            except ValueError:
                self.editor.failed.emit(f"'{value}' is not a learning-rate multiplier")
                return False
            return self.editor.set_lr_multiplier([index.internalPointer()], multiplier)
        if not index.isValid() or role != Qt.ItemDataRole.CheckStateRole:
            return False
        node = index.internalPointer()
        checked = _check_value(value) != Qt.CheckState.Unchecked
        if index.column() == FREEZE:
            if isinstance(node, WeightNode) and not node.freezable:
                return False
            self.editor.set_trainable([node], not checked)
            return True
        if index.column() == STOP:
            points = self.stop_points(node)
            if not points:
                return False
            active = set(self.document.stop_points)
            if checked:
                self.editor.set_stop_points(add=[p for p in points if p not in active])
            else:
                self.editor.set_stop_points(remove=[p for p in points if p in active])
            return True
        return False

    # --- filter highlight -------------------------------------------------------------
    def set_matches(self, nodes) -> None:
        """Highlights these nodes (the filter box's matches)."""
        matches = {id(n) for n in nodes}
        if matches == self._matches:
            return
        changed = matches ^ self._matches
        self._matches = matches
        roles = [Qt.ItemDataRole.BackgroundRole]
        for node in self.iter_nodes():
            if id(node) in changed:
                for column in range(len(COLUMNS)):
                    self._cells.pop((id(node), column), None)
                index = self._index_of(node)
                self.dataChanged.emit(index, index.siblingAtColumn(len(COLUMNS) - 1), roles)

    def iter_nodes(self):
        """Every layer and weight node, parents first."""
        if self.document is None:
            return
        for node in self.document.root.walk():
            yield node
            yield from node.weights
