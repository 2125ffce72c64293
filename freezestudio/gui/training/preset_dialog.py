"""The fine-tuning presets dialog (Training > Fine-Tuning Preset..., and the Schedule tab's
"Preset..." button): a thin view over `core/edits/presets.py`.

The user picks a recipe (`gradual` or `discriminative`) and its parameters; the dialog
lists the blocks the core finds (`presets.find_blocks`, from input to head) with what each
gets, or, when none are found, shows the core's message and takes globs, one per block.
Apply builds the preset's text exactly as the CLI's `--preset` takes it (`preset_text`)
and hands `presets.preset_plan`'s plan to `Editor.apply_plan`: one undoable edit, so
Ctrl+Z gives back the previous state exactly.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Slot
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QSpinBox,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
)

from freezestudio.core.edits import presets
from freezestudio.core.errors import PlanError

RECIPES = (("gradual", "Gradual unfreezing: train the head, then the last N blocks"),
           ("discriminative", "Discriminative rates: LR grows from the first block to the head"))


def _double(low: float, high: float, value: float, decimals: int = 4) -> QDoubleSpinBox:
    box = QDoubleSpinBox()
    box.setDecimals(decimals)
    box.setRange(low, high)
    box.setSingleStep(0.01)
    box.setValue(value)
    return box


class PresetDialog(QDialog):
    """Chooses and applies a preset to `editor.document` (see the module docstring).

    Attributes:
        blocks: the blocks found for the current globs (empty when none are found).
        error: the core's message when it finds no blocks or refuses the values, or "".
    """

    def __init__(self, editor, parent=None):
        super().__init__(parent)
        self.setWindowTitle("Fine-Tuning Preset")
        self.editor = editor
        self.blocks: list = []
        self.error = ""
        self.recipe = QComboBox()
        for name, text in RECIPES:
            self.recipe.addItem(text, name)
        self.block_count = QSpinBox()
        self.block_count.setRange(1, 100_000)  # narrowed to the blocks found by `find`
        self.block_count.setValue(2)
        self.from_epoch = QSpinBox()
        self.from_epoch.setRange(2, 100_000)
        self.factor = _double(0.0001, 100.0, 0.1)
        self.factor.setToolTip("Learning-rate multiplier of the unfrozen blocks")
        self.lowest = _double(0.000001, 1.0, 0.01, decimals=6)
        self.lowest.setToolTip("The first block's learning-rate multiplier; the head's is 1")
        self.ratio = _double(1.0, 1000.0, 1.0, decimals=3)
        self.ratio.setPrefix("\u00d7")
        self.ratio.setToolTip("Each block's multiplier over the one before it (and the "
                              "head's over the last block's); sets the first block's LR \u00d7")
        self.globs = QLineEdit()
        self.globs.setPlaceholderText("found from the layer names; or GLOB; GLOB; ... "
                                      "(input to head)")
        self.globs.setToolTip("One glob per block, from input to head, separated by ';'. "
                              "Empty: the blocks are found from the layer names")
        self.form = QFormLayout()
        self.form.addRow("Recipe", self.recipe)
        self.form.addRow("Block globs", self.globs)
        for label, widget in (("Unfreeze the last N blocks", self.block_count),
                              ("LR \u00d7 (their multiplier)", self.factor),
                              ("From epoch", self.from_epoch),
                              ("First block's LR \u00d7", self.lowest),
                              ("Ratio block to block", self.ratio)):
            self.form.addRow(label, widget)
        self.list = QTreeWidget()
        self.list.setHeaderLabels(["Block (input to head)", "Layers", "Gets"])
        self.list.setRootIsDecorated(False)
        self.message = QLabel()
        self.message.setWordWrap(True)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Apply
                                        | QDialogButtonBox.StandardButton.Cancel)
        self.apply_button = self.buttons.button(QDialogButtonBox.StandardButton.Apply)
        for button in self.buttons.buttons():  # Enter in the globs field finds, no more
            button.setAutoDefault(False)
        layout = QVBoxLayout(self)
        layout.addLayout(self.form)
        layout.addWidget(self.list, 1)
        layout.addWidget(self.message)
        layout.addWidget(self.buttons)
        self.resize(620, 480)
        self.recipe.currentIndexChanged.connect(self._update)
        self.globs.editingFinished.connect(self.find)
        for box in (self.block_count, self.from_epoch, self.factor, self.lowest):
            box.valueChanged.connect(self._update)
        self.ratio.valueChanged.connect(self._ratio_changed)
        self.apply_button.clicked.connect(self.apply)
        self.buttons.rejected.connect(self.reject)
        self.find()

    # --- what the core finds ----------------------------------------------------------
    def glob_list(self) -> list[str]:
        return [g.strip() for g in self.globs.text().split(";") if g.strip()]

    @Slot()
    def find(self) -> None:
        """Finds the blocks (from the names, or the globs typed) and shows them."""
        try:
            self.blocks = presets.find_blocks(self.editor.document, self.glob_list())
            self.error = ""
        except PlanError as exc:
            self.blocks, self.error = [], str(exc)
        self.block_count.setRange(1, max(len(self.blocks), 1))
        self._update()
        if not self.blocks:
            self.globs.setFocus()

    def preset_text(self) -> str:
        """The preset as the CLI's `--preset` takes it (`NAME:key=value,...`)."""
        name = self.recipe.currentData()
        if name == "gradual":
            options = [f"blocks={self.block_count.value()}",
                       f"from_epoch={self.from_epoch.value()}", f"lr={self.factor.value():g}"]
        else:
            options = [f"lowest={self.lowest.value():g}"]
        if self.glob_list():
            options.append("globs=" + ";".join(self.glob_list()))
        return f"{name}:{','.join(options)}"

    def _gets(self) -> list[str]:
        """Per block found, what the preset gives it."""
        n = len(self.blocks)
        if self.recipe.currentData() == "gradual":
            top = self.block_count.value()
            return [f"from epoch {self.from_epoch.value()} at LR \u00d7"
                    f"{self.factor.value():g}" if i >= n - top else "frozen"
                    for i in range(n)]
        return [f"LR \u00d7{value:.4g}"
                for value in presets.discriminative_multipliers(n, self.lowest.value())]

    @Slot()
    def _update(self, *_args) -> None:
        gradual = self.recipe.currentData() == "gradual"
        for widget in (self.block_count, self.factor, self.from_epoch):
            self.form.setRowVisible(widget, gradual)
        for widget in (self.lowest, self.ratio):
            self.form.setRowVisible(widget, not gradual)
        n = len(self.blocks)
        self.ratio.blockSignals(True)
        self.ratio.setValue(self.lowest.value() ** (-1 / n) if n else 1.0)
        self.ratio.blockSignals(False)
        self.ratio.setEnabled(bool(n))
        self.list.clear()
        for block, gets in zip(self.blocks, self._gets(), strict=True):
            self.list.addTopLevelItem(QTreeWidgetItem([block.glob, str(len(block.paths)),
                                                       gets]))
        for column in (1, 2):
            self.list.resizeColumnToContents(column)
        self.list.setColumnWidth(0, max(self.list.width() - self.list.columnWidth(1)
                                        - self.list.columnWidth(2) - 24, 180))
        if self.error:
            self._say(self.error + ".", error=True)
        else:
            head = ("the head trains from epoch 1, everything else is frozen" if gradual
                    else "the head keeps LR \u00d71; the freeze state is unchanged")
            self._say(f"{n} blocks found; {head}.")
        self.apply_button.setEnabled(bool(self.blocks))

    @Slot(float)
    def _ratio_changed(self, ratio: float) -> None:
        """A ratio r over n blocks: the first block's multiplier r^-n."""
        if self.blocks:
            self.lowest.setValue(ratio ** -len(self.blocks))

    def _say(self, text: str, error: bool = False) -> None:
        self.message.setText(text)
        self.message.setStyleSheet("color: #c0392b;" if error else "")

    # --- apply --------------------------------------------------------------------------
    @Slot()
    def apply(self) -> bool:
        """Applies the preset as one undoable edit; closes the dialog when it did."""
        text = self.preset_text()
        try:
            plan = presets.preset_plan(self.editor.document, text)
        except PlanError as exc:
            self._say(str(exc), error=True)
            return False
        if not self.editor.apply_plan(plan, f"preset {text}"):
            self._say("the preset changed nothing or was refused", error=True)
            return False
        self.accept()
        return True


def open_preset_dialog(editor, parent) -> None:
    """Opens the dialog for the editor's document (window-modal), if there is one; it is
    deleted when it closes (applied or cancelled)."""
    if editor.document is None:
        return
    dialog = PresetDialog(editor, parent)
    dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    dialog.setModal(True)
    dialog.show()
