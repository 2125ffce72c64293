"""The tree view: stop-gradient toggles per insertion point, space to toggle, sizing."""

from __future__ import annotations

from PySide6.QtCore import (
    QEvent,
    QItemSelectionModel,
    QModelIndex,
    QPoint,
    QRect,
    QSize,
    Qt,
    Signal,
)
from PySide6.QtGui import QKeyEvent, QPalette, QPen
from PySide6.QtWidgets import (
    QAbstractItemView,
    QApplication,
    QHeaderView,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QToolTip,
    QTreeView,
)

from freezestudio.core.model.tree import LayerNode
from freezestudio.gui.common import style
from freezestudio.gui.editor.tree_model import (
    ADAPTER,
    CLASS,
    COLUMNS,
    FREEZE,
    GRADIENT,
    LR,
    NAME,
    PARAMS,
    POINTS_ROLE,
    SHAPE,
    STOP,
    TRAINABLE,
)

BOX = 14
GAP = 4
SQUEEZABLE = (NAME, CLASS, SHAPE)
"""Columns narrowed (their text elided) when the tree's viewport is too narrow for all."""
HIDEABLE = (LR, ADAPTER)
"""If narrowing is not enough, these columns are hidden, first to last, until the rest fits;
they come back when the tree is wide enough (Freeze, Stop gradient and Gradient never hide)."""
MIN_NAME_WIDTH = 140


class StopPointDelegate(QStyledItemDelegate):
    """Paints one toggle box per insertion point; a click toggles that point.

    Signals:
        point_toggled(str): the address of the clicked point.
    """

    point_toggled = Signal(str)

    def _boxes(self, rect: QRect, count: int) -> list[QRect]:
        top = rect.top() + (rect.height() - BOX) // 2
        fit = max(1, (rect.width() - GAP) // (BOX + GAP))
        return [QRect(rect.left() + GAP + k * (BOX + GAP), top, BOX, BOX)
                for k in range(min(count, fit))]

    def paint(self, painter, option, index) -> None:
        opt = QStyleOptionViewItem(option)
        self.initStyleOption(opt, index)
        opt.text = ""
        opt.features &= ~QStyleOptionViewItem.ViewItemFeature.HasCheckIndicator
        widget = option.widget
        (widget.style() if widget else QApplication.style()).drawControl(
            QStyle.ControlElement.CE_ItemViewItem, opt, painter, widget)
        points = index.data(POINTS_ROLE) or []
        if not points:
            return
        boxes = self._boxes(option.rect, len(points))
        painter.save()
        painter.setRenderHint(painter.RenderHint.Antialiasing)
        outline = option.palette.color(QPalette.ColorRole.Text)
        outline.setAlpha(150)
        for box, (_, active) in zip(boxes, points, strict=False):
            if active:
                style.icon(style.STOP).paint(painter, box.adjusted(-1, -1, 1, 1))
            else:
                painter.setPen(QPen(outline, 1.2))
                painter.setBrush(Qt.BrushStyle.NoBrush)
                painter.drawRoundedRect(box.adjusted(1, 1, -1, -1), 3, 3)
        if len(points) > len(boxes):
            painter.setPen(option.palette.color(QPalette.ColorRole.Text))
            rest = QRect(boxes[-1].right() + GAP, option.rect.top(), 40, option.rect.height())
            painter.drawText(rest, Qt.AlignmentFlag.AlignVCenter,
                             f"+{len(points) - len(boxes)}")
        painter.restore()

    def point_at(self, rect: QRect, index: QModelIndex, pos: QPoint) -> str | None:
        points = index.data(POINTS_ROLE) or []
        for box, (address, _) in zip(self._boxes(rect, len(points)), points, strict=False):
            if box.adjusted(-2, -2, 2, 2).contains(pos):
                return address
        return None

    def editorEvent(self, event, model, option, index) -> bool:
        kind = event.type()
        if kind in (QEvent.Type.MouseButtonRelease, QEvent.Type.MouseButtonDblClick) and \
                event.button() == Qt.MouseButton.LeftButton:
            address = self.point_at(option.rect, index, event.position().toPoint())
            if address is None:
                return False
            if kind == QEvent.Type.MouseButtonRelease:
                self.point_toggled.emit(address)
            return True
        return False

    def helpEvent(self, event, view, option, index) -> bool:
        address = self.point_at(option.rect, index, event.pos())
        if address is None:
            return super().helpEvent(event, view, option, index)
        active = any(a == address and on for a, on in index.data(POINTS_ROLE) or [])
        state = "ON (click to remove)" if active else "off (click to insert)"
        QToolTip.showText(event.globalPos(), f"{address}: stop-gradient {state}", view)
        return True

    def sizeHint(self, option, index) -> QSize:
        count = len(index.data(POINTS_ROLE) or [])
        return QSize(GAP + max(1, min(count, 6)) * (BOX + GAP), BOX + 4)


class LayerTreeView(QTreeView):
    """QTreeView for `LayerTreeModel` with bulk-toggle keys and the stop-point delegate.

    Signals:
        toggle_requested(): Space pressed: toggle freezing of the selected rows.
    """

    toggle_requested = Signal()

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setUniformRowHeights(True)
        self.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.setAllColumnsShowFocus(True)
        self.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        # only the LR x column is editable (its flags say so): double-click or F2
        self.setEditTriggers(QAbstractItemView.EditTrigger.DoubleClicked |
                             QAbstractItemView.EditTrigger.EditKeyPressed)
        self.setExpandsOnDoubleClick(True)
        self.setIconSize(QSize(16, 16))
        self.stop_delegate = StopPointDelegate(self)
        self.setItemDelegateForColumn(STOP, self.stop_delegate)
        header = self.header()
        header.setStretchLastSection(True)
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        header.setDefaultAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)

    def setModel(self, model) -> None:
        """A `LayerTreeModel`: its row rebuilds (adapters added or removed) keep what the
        view shows: expanded rows, selection, current row, scroll position."""
        super().setModel(model)
        self._kept_view = None
        model.rows_about_to_rebuild.connect(self._keep_view)
        model.rows_rebuilt.connect(self._show_kept_view)

    def _keep_view(self) -> None:
        self._kept_view = (self.view_state(), self.verticalScrollBar().value())

    def _show_kept_view(self) -> None:
        kept, self._kept_view = self._kept_view, None
        if kept is not None:
            self.restore_view_state(kept[0])
            self.verticalScrollBar().setValue(kept[1])

    def changeEvent(self, event) -> None:
        super().changeEvent(event)
        if event.type() == QEvent.Type.PaletteChange and self.model() is not None:
            self.model().restyle()  # row tints derive from the palette

    def keyPressEvent(self, event: QKeyEvent) -> None:
        plain = not event.modifiers() & ~Qt.KeyboardModifier.KeypadModifier
        if event.key() == Qt.Key.Key_Space and plain:
            self.toggle_requested.emit()
            event.accept()
            return
        super().keyPressEvent(event)

    def selected_nodes(self) -> list:
        """The selected layers and weights, in tree order, each once."""
        model = self.model()
        rows = self.selectionModel().selectedRows(0) if self.selectionModel() else []
        nodes = [model.node(i) for i in sorted(rows, key=_tree_order)]
        return [n for n in nodes if n is not None]

    def current_node(self):
        return self.model().node(self.currentIndex()) if self.model() else None

    def select_nodes(self, nodes) -> None:
        from PySide6.QtCore import QItemSelection

        model = self.model()
        selection = QItemSelection()
        first = None
        for node in nodes:
            index = model.index_of(node)
            if index.isValid():
                selection.select(index, index.siblingAtColumn(len(COLUMNS) - 1))
                first = first or index
        flags = QItemSelectionModel.SelectionFlag.ClearAndSelect
        self.selectionModel().select(selection, flags)
        if first is not None:
            self.selectionModel().setCurrentIndex(first, QItemSelectionModel.SelectionFlag.NoUpdate)
            self.reveal(first)

    def view_state(self) -> tuple[list[str], list[str], str | None]:
        """(expanded layer paths, selected addresses, current address): what the user
        sees, by address, to show again over another document of the same model."""
        model = self.model()
        document = model.document
        if document is None:
            return [], [], None
        expanded = [n.path for n in document.root.walk()
                    if (n.children or n.weights) and self.isExpanded(model.index_of(n))]
        current = self.current_node()
        return (expanded, [_address(n) for n in self.selected_nodes()],
                _address(current) if current is not None else None)

    def restore_view_state(self, state: tuple[list[str], list[str], str | None]) -> None:
        """Expands, selects and makes current what `view_state` gave, where the model's
        document has those addresses."""
        expanded, selected, current = state
        model = self.model()
        document = model.document

        def find(address):
            try:
                return document.find(address)
            except KeyError:
                return None

        for path in expanded:
            node = find(path)
            if node is not None:
                self.expand(model.index_of(node))
        self.select_nodes([n for n in map(find, selected) if n is not None])
        node = find(current) if current is not None else None
        if node is not None:
            self.selectionModel().setCurrentIndex(
                model.index_of(node), QItemSelectionModel.SelectionFlag.NoUpdate)

    def reveal(self, index: QModelIndex) -> None:
        parent = index.parent()
        while parent.isValid():
            self.expand(parent)
            parent = parent.parent()
        self.scrollTo(index)

    def visible_ranges(self):
        """(parent index, first row, last row) runs of the rows on screen, for
        `LayerTreeModel.set_ranges_provider` (cost: the ~40 visible rows, not the model)."""
        runs: dict = {}
        index = self.indexAt(QPoint(1, 1))
        bottom = self.viewport().height()
        while index.isValid() and self.visualRect(index).top() <= bottom:
            parent = index.parent()
            key = (parent.row(), parent.column(), id(parent.internalPointer())) \
                if parent.isValid() else None
            if key in runs:
                first, last = runs[key][1:]
                runs[key] = (parent, min(first, index.row()), max(last, index.row()))
            else:
                runs[key] = (parent, index.row(), index.row())
            index = self.indexBelow(index)
        return list(runs.values())

    # --- filter: hide rows without matches -----------------------------------------
    def show_only(self, keep: set[int] | None) -> None:
        """Hides rows whose subtree holds no node with id in `keep` (None: show all)."""
        model = self.model()
        if model is None or model.document is None:
            return

        def visit(node) -> bool:
            kept_below = False
            for child in model.children(node):
                kept_below = visit(child) or kept_below
            kept = keep is None or id(node) in keep or kept_below
            index = model.index_of(node)
            if index.parent().isValid():
                self.setRowHidden(index.row(), index.parent(), not kept)
            if keep is not None and kept_below:
                self.expand(index)
            return kept

        visit(model.document.root)

    # --- sizing ---------------------------------------------------------------------------
    def fit_columns(self) -> None:
        """Sets column widths from the content near the top of the tree (cheap on big models)."""
        model = self.model()
        if model is None or model.document is None:
            return
        metrics = self.fontMetrics()
        pad = 16
        widths = {c: metrics.horizontalAdvance(COLUMNS[c]) + pad for c in range(len(COLUMNS))}
        indent = self.indentation()
        bold = self.font()
        bold.setBold(True)
        from PySide6.QtGui import QFontMetrics

        bold_metrics = QFontMetrics(bold)
        shapes_measured = 0
        for count, node in enumerate(model.document.root.walk()):
            if count > 400:  # enough to size the columns; a 771-layer walk costs ~40 ms
                break
            depth = sum(1 for _ in node.ancestors())
            text_metrics = bold_metrics if node.is_container else metrics
            name_width = text_metrics.horizontalAdvance(node.name) + (depth + 1) * indent + 44
            widths[NAME] = max(widths[NAME], name_width)
            for weight in node.weights:
                widths[NAME] = max(widths[NAME], metrics.horizontalAdvance(weight.key)
                                   + (depth + 2) * indent + 44)
            widths[CLASS] = max(widths[CLASS], metrics.horizontalAdvance(node.class_name) + pad)
            if depth <= 2 and shapes_measured < 200:
                shapes_measured += 1
                shape = model.data(model.index_of(node, SHAPE))
                widths[SHAPE] = max(widths[SHAPE], metrics.horizontalAdvance(shape or "") + pad)
        digits = metrics.horizontalAdvance(f"{model.document.counts().params:,}")
        digits += pad
        widths[PARAMS] = max(widths[PARAMS], digits)
        widths[TRAINABLE] = max(widths[TRAINABLE], digits)
        widths[FREEZE] = max(widths[FREEZE], metrics.horizontalAdvance("partly") + 48)
        widths[STOP] = max(widths[STOP], 3 * (BOX + GAP) + GAP + 8)
        widths[GRADIENT] = max(widths[GRADIENT], metrics.horizontalAdvance("receives") + 40)
        widths[NAME] = min(widths[NAME], 420)
        widths[SHAPE] = min(widths[SHAPE], 260)
        widths[CLASS] = min(widths[CLASS], 240)
        if self.isVisible():  # a hidden view's viewport has no real width yet
            floors = {c: metrics.horizontalAdvance(COLUMNS[c]) + pad for c in SQUEEZABLE}
            floors[NAME] = max(floors[NAME], MIN_NAME_WIDTH)
            squeeze_to_width(widths, floors, self.viewport().width())
            room, shown = self.viewport().width(), sum(widths.values())
            for column in HIDEABLE:
                self.setColumnHidden(column, shown > room)
                if shown > room:
                    shown -= widths[column]
        for column, width in widths.items():
            self.setColumnWidth(column, width)

    def sizeHintForColumn(self, column: int) -> int:  # keep Qt from scanning every row
        return self.columnWidth(column)


def _address(node) -> str:
    return node.path if isinstance(node, LayerNode) else node.id


def squeeze_to_width(widths: dict[int, int], floors: dict[int, int], room: int) -> None:
    """Narrows the columns in `floors` (not below their floor) until all columns fit in
    `room` pixels, taking from each in proportion to what it has above its floor; so the
    Freeze, Stop gradient and Gradient columns stay in view without scrolling.

    Args:
        widths: column -> width; changed in place.
        floors: the columns that may be narrowed -> their least width.
        room: the viewport's width.
    """
    excess = sum(widths.values()) - room
    slack = {c: max(widths[c] - floors[c], 0) for c in floors}
    total = sum(slack.values())
    if excess <= 0 or total == 0:
        return
    take = min(excess, total)
    for column, spare in slack.items():
        widths[column] -= -(-take * spare // total)  # rounded up: the sum fits


def _tree_order(index: QModelIndex) -> tuple:
    rows = []
    while index.isValid():
        rows.append(index.row())
        index = index.parent()
    return tuple(reversed(rows))


__all__ = ["LayerTreeView", "StopPointDelegate", "NAME", "FREEZE", "GRADIENT"]
