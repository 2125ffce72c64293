"""The Schedule tab of the training dock: gradual-unfreezing stages, edited as a table.

A view over `document.fine_tuning.schedule` (core `Stage`s): one row per stage with its
start epoch, what it unfreezes (globs separated by `;`, or the tree's selection), the
learning-rate multiplier of what it unfreezes (empty: unchanged) and its BatchNorm
policy; "Preset..." opens the fine-tuning presets dialog (`preset_dialog.py`). Every
change goes through the `Editor` (`set_schedule`), so it is undoable and
saved in plans; the table re-reads the document after every edit, undo and redo.
"""

from __future__ import annotations

from PySide6.QtCore import Signal, Slot
from PySide6.QtWidgets import (
    QComboBox,
    QGridLayout,
    QHeaderView,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from freezestudio.core.edits.plans import glob_escape
from freezestudio.core.model.fine_tuning import BATCHNORM_POLICIES, Stage
from freezestudio.core.model.tree import WeightNode
from freezestudio.gui.training.preset_dialog import open_preset_dialog

EPOCH, UNFREEZE, LR, BATCHNORM = range(4)
_HEADERS = ("From epoch", "Unfreeze (globs; ...)", "LR \u00d7", "BatchNorm")


def stage_row(stage: Stage) -> tuple[str, str, str, str]:
    """The four cells of a stage (its unfrozen globs, and their common multiplier)."""
    unfreeze = "; ".join(m for m, v in stage.trainable if v)
    factors = {v for _, v in stage.lr_multipliers}
    factor = f"{factors.pop():g}" if len(factors) == 1 else ""
    return str(stage.from_epoch), unfreeze, factor, stage.batchnorm


def row_stage(epoch: str, unfreeze: str, factor: str, batchnorm: str) -> Stage:
    """The Stage of four cells. Raises ValueError for a bad epoch or multiplier."""
    globs = tuple(g.strip() for g in unfreeze.split(";") if g.strip())
    start = int(epoch)
    if start < 1:
        raise ValueError(f"a stage starts at epoch 1 or later, got {start}")
    multipliers = ()
    if factor.strip():
        value = float(factor)
        if not value > 0:
            raise ValueError(f"a learning-rate multiplier must be > 0, got {factor}")
        multipliers = tuple((g, value) for g in globs)
    return Stage(start, tuple((g, True) for g in globs), multipliers, batchnorm)


class ScheduleTable(QWidget):
    """The stages of the current document.

    Args:
        editor: the window's `Editor` (edits go through it).
        selection: `() -> nodes` selected in the tree (for "Unfreeze Selection").

    Signals:
        failed(str): a cell holds something that is not a stage (message for the user).
    """

    failed = Signal(str)

    def __init__(self, editor, selection, parent=None):
        super().__init__(parent)
        self.editor, self.selection = editor, selection
        self.table = QTableWidget(0, len(_HEADERS))
        self.table.setHorizontalHeaderLabels(_HEADERS)
        header = self.table.horizontalHeader()
        for column in (EPOCH, LR, BATCHNORM):  # the globs get the rest of a narrow tab
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(UNFREEZE, QHeaderView.ResizeMode.Stretch)
        self.table.verticalHeader().setVisible(False)
        self.table.setToolTip("From its epoch on, a stage unfreezes these layers (globs over "
                              "layer paths) at this learning-rate multiplier; BatchNorm "
                              "'frozen' keeps the BatchNorm layers it unfreezes in inference "
                              "mode")
        self.add_button = QPushButton("Add Stage")
        self.selection_button = QPushButton("Unfreeze Selection")
        self.selection_button.setToolTip("Set the current stage's globs to the layers "
                                         "selected in the tree")
        self.remove_button = QPushButton("Remove")
        self.preset_button = QPushButton("Preset\u2026")
        self.preset_button.setToolTip("Gradual unfreezing or discriminative learning rates "
                                      "over the model's blocks, as one undoable edit")
        buttons = QGridLayout()  # two rows: the dock's tab is narrow
        for k, button in enumerate((self.add_button, self.remove_button,
                                    self.selection_button, self.preset_button)):
            buttons.addWidget(button, k // 2, k % 2)
        layout = QVBoxLayout(self)
        layout.addWidget(self.table, 1)
        layout.addLayout(buttons)
        self._loading = False
        self.add_button.clicked.connect(self.add_stage)
        self.selection_button.clicked.connect(self.unfreeze_selection)
        self.remove_button.clicked.connect(self.remove_stage)
        self.preset_button.clicked.connect(
            lambda: open_preset_dialog(self.editor, self.window()))
        self.table.itemChanged.connect(self._cell_edited)
        self.refresh()

    # --- document -> table ------------------------------------------------------------
    def refresh(self) -> None:
        """Re-reads the schedule of the editor's document."""
        document = self.editor.document
        stages = document.fine_tuning.schedule if document is not None else ()
        self._loading = True
        self.table.setRowCount(len(stages))
        for row, stage in enumerate(stages):
            epoch, unfreeze, factor, policy = stage_row(stage)
            for column, text in ((EPOCH, epoch), (UNFREEZE, unfreeze), (LR, factor)):
                self.table.setItem(row, column, QTableWidgetItem(text))
            combo = QComboBox()
            combo.addItems(BATCHNORM_POLICIES)
            combo.setCurrentText(policy)
            combo.currentTextChanged.connect(self._cell_edited)
            self.table.setCellWidget(row, BATCHNORM, combo)
        self._loading = False
        enabled = document is not None
        for widget in (self.table, self.add_button, self.selection_button,
                       self.remove_button, self.preset_button):
            widget.setEnabled(enabled)

    # --- table -> document --------------------------------------------------------------
    def stages(self) -> list[Stage]:
        """The table's rows as stages. Raises ValueError for a bad cell."""
        rows = []
        for row in range(self.table.rowCount()):
            cells = [self.table.item(row, c).text() if self.table.item(row, c) else ""
                     for c in (EPOCH, UNFREEZE, LR)]
            combo = self.table.cellWidget(row, BATCHNORM)
            rows.append(row_stage(*cells, combo.currentText() if combo else "frozen"))
        return sorted(rows, key=lambda s: s.from_epoch)

    def _commit(self, stages: list, text: str) -> None:
        starts = [s.from_epoch for s in stages]
        if len(set(starts)) != len(starts):
            self.failed.emit("two stages start at the same epoch")
        else:  # a refusal is reported by the editor's `failed`
            self.editor.set_schedule(stages, text)
        self.refresh()

    @Slot()
    def _cell_edited(self, *_args) -> None:
        if self._loading:
            return
        try:
            stages = self.stages()
        except ValueError as exc:
            self.failed.emit(f"schedule: {exc}")
            self.refresh()
            return
        self._commit(stages, "Edit schedule")

    @Slot()
    def add_stage(self) -> None:
        """A stage one epoch after the last (epoch 2 for the first), unfreezing the tree's
        selection (if any) at x0.1."""
        stages = list(self.editor.document.fine_tuning.schedule)
        start = stages[-1].from_epoch + 1 if stages else 2
        globs = self._selected_globs()
        stages.append(Stage(start, tuple((g, True) for g in globs),
                            tuple((g, 0.1) for g in globs)))
        self._commit(stages, f"Add schedule stage from epoch {start}")

    @Slot()
    def unfreeze_selection(self) -> None:
        """The current row's globs become the tree's selection."""
        row, globs = self.table.currentRow(), self._selected_globs()
        stages = list(self.editor.document.fine_tuning.schedule)
        if not globs or not 0 <= row < len(stages):
            self.failed.emit("select a stage and some layers in the tree first")
            return
        old = stages[row]
        factor = stage_row(old)[2]
        stages[row] = row_stage(str(old.from_epoch), "; ".join(globs), factor, old.batchnorm)
        self._commit(stages, f"Stage from epoch {old.from_epoch}: unfreeze the selection")

    @Slot()
    def remove_stage(self) -> None:
        row = self.table.currentRow()
        stages = list(self.editor.document.fine_tuning.schedule)
        if 0 <= row < len(stages):
            removed = stages.pop(row)
            self._commit(stages, f"Remove schedule stage from epoch {removed.from_epoch}")

    def _selected_globs(self) -> list[str]:
        return [glob_escape(n.id if isinstance(n, WeightNode) else n.path)
                for n in self.selection() if isinstance(n, WeightNode) or n.path]
