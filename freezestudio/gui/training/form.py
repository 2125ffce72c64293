"""The training panel's inputs: where the data come from (with a preview) and the config.

`DataSourceBox` builds a `DataSpec` and shows the `Preview` the worker read for it;
`ConfigForm` builds a core `TrainingConfig`. Neither reads data nor touches the model.
"""

from __future__ import annotations

from html import escape
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from freezestudio.core.errors import UserError
from freezestudio.core.training.config import CACHE_MODES, OPTIMIZERS, SCHEDULES, TrainingConfig
from freezestudio.core.training.preview import DEMO_SOURCE, DataSpec

DATA_FILTER = "Training data (*.npz *.csv);;All files (*)"
LEARNING_RATES = ("1e-2", "3e-3", "1e-3", "3e-4", "1e-4", "3e-5", "1e-5")
LOSSES = ("sparse_categorical_crossentropy", "categorical_crossentropy", "binary_crossentropy",
          "mse", "mae", "huber")
OWN, SPLIT, NONE = "own", "split", "none"


def get_data_path(parent, folder: bool, directory: str = "") -> str | None:
    """Asks for a data file or an image folder (tests replace this function)."""
    if folder:
        path = QFileDialog.getExistingDirectory(parent, "Image folder (one sub-folder per class)",
                                                directory)
    else:
        path, _ = QFileDialog.getOpenFileName(parent, "Training data", directory, DATA_FILTER)
    return path or None


def demo_data_for(document) -> str | None:
    """The bundled data file that goes with a demo model, else None."""
    if document is None:
        return None
    from freezestudio.core.data import resolve_demo

    try:
        return resolve_demo(DEMO_SOURCE, document.source_path).name
    except UserError:
        return None


class DataSourceBox(QWidget):
    """Data source (demo data, a file, an image folder), validation, and the preview.

    Signals:
        changed(): the spec changed (the panel asks the worker for a new preview).
    """

    changed = Signal()

    def __init__(self, parent=None):
        super().__init__(parent)
        self.source = QComboBox()
        self.source.setMinimumContentsLength(18)
        self.source.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.source.setToolTip("Training data: .npz (x, y[, x_val, y_val]), .csv (numeric "
                               "columns), or a folder with one sub-folder of images per class")
        self.file_button = QToolButton()
        self.file_button.setText("File…")
        self.file_button.setToolTip("An .npz or .csv file")
        self.folder_button = QToolButton()
        self.folder_button.setText("Folder…")
        self.folder_button.setToolTip("A folder with one sub-folder of images per class")
        self.validation = QComboBox()
        for text, key in (("the data's own, if any", OWN), ("hold out a fraction", SPLIT),
                          ("none", NONE)):
            self.validation.addItem(text, key)
        self.fraction = QDoubleSpinBox()
        self.fraction.setRange(0.01, 0.9)
        self.fraction.setSingleStep(0.05)
        self.fraction.setValue(0.2)
        self.fraction.setEnabled(False)
        self.target = QLineEdit()
        self.target.setPlaceholderText("last column")
        self.target.setToolTip("CSV files: the label column")
        self.preview = QLabel("Choose training data.")
        self.preview.setWordWrap(True)
        self.preview.setTextFormat(Qt.TextFormat.RichText)
        self.preview.setMinimumHeight(60)
        self.preview.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        row = QHBoxLayout()
        row.addWidget(self.source, 1)
        row.addWidget(self.file_button)
        row.addWidget(self.folder_button)
        validation = QHBoxLayout()
        validation.addWidget(self.validation, 1)
        validation.addWidget(self.fraction)
        form = QFormLayout()
        form.addRow("Data", row)
        form.addRow("Validation", validation)
        form.addRow("CSV target", self.target)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(form)
        layout.addWidget(self.preview, 1)
        self.file_button.clicked.connect(lambda: self._choose(folder=False))
        self.folder_button.clicked.connect(lambda: self._choose(folder=True))
        self.source.currentIndexChanged.connect(self._on_changed)
        self.validation.currentIndexChanged.connect(self._on_changed)
        self.fraction.valueChanged.connect(self._on_changed)
        self.target.editingFinished.connect(self._on_changed)
        self.seed_source = lambda: None  # the split's seed (the panel sets it)

    # --- the spec ------------------------------------------------------------------
    def set_document(self, document) -> None:
        """Offers the bundled demo data when `document` is a demo model."""
        self.source.blockSignals(True)
        keep = [(self.source.itemText(i), self.source.itemData(i))
                for i in range(self.source.count()) if self.source.itemData(i) != DEMO_SOURCE]
        self.source.clear()
        demo = demo_data_for(document)
        if demo:
            self.source.addItem(f"demo: {demo}", DEMO_SOURCE)
            self.source.setItemData(0, "The bundled task-B data for this demo model",
                                    Qt.ItemDataRole.ToolTipRole)
        for text, data in keep:
            self.source.addItem(text, data)
        if not self.source.count():
            self.source.addItem("(choose a file or folder)", None)
        self.source.setCurrentIndex(0)
        self.source.blockSignals(False)
        self.show_message("Choose training data." if self.spec() is None else "Reading…")

    def add_source(self, path: str) -> None:
        """Adds a file or folder to the choices and selects it."""
        index = self.source.findData(path)
        if index < 0:
            placeholder = self.source.findData(None)
            if placeholder >= 0:
                self.source.removeItem(placeholder)
            label = Path(path).name + ("/" if Path(path).is_dir() else "")
            self.source.addItem(label, path)
            self.source.setItemData(self.source.count() - 1, path,
                                    Qt.ItemDataRole.ToolTipRole)
            index = self.source.count() - 1
        self.source.setCurrentIndex(index)
        self._on_changed()

    def _choose(self, folder: bool) -> None:
        current = self.source.currentData()
        start = str(Path(current).parent) if current and current != DEMO_SOURCE else ""
        path = get_data_path(self, folder, start)
        if path:
            self.add_source(path)

    def spec(self) -> DataSpec | None:
        source = self.source.currentData()
        if not source:
            return None
        mode = self.validation.currentData()
        split = None if mode == OWN else (0.0 if mode == NONE else self.fraction.value())
        return DataSpec(str(source), split, self.seed_source(), self.target.text().strip() or None)

    def _on_changed(self, *_args) -> None:
        self.fraction.setEnabled(self.validation.currentData() == SPLIT)
        source = self.source.currentData() or ""
        self.target.setEnabled(str(source).lower().endswith(".csv"))
        self.changed.emit()

    # --- the preview -----------------------------------------------------------------
    def show_message(self, text: str, error: bool = False) -> None:
        color = "#c0392b" if error else ""
        style = f" style='color:{color}'" if color else ""
        self.preview.setText(f"<p{style}>{escape(text)}</p>")

    def show_preview(self, preview) -> None:
        """Shows what the data hold (shapes, classes, samples) and whether they fit."""
        parts = []
        summary = preview.summary
        if summary:
            parts.append(f"<b>{escape(summary['source'])}</b>: {summary['train_samples']} "
                         f"training, {summary['validation_samples']} validation samples "
                         f"({escape(summary['validation'])})")
            inputs = ", ".join(_shape(i["shape"]) + " " + i["dtype"] for i in summary["inputs"])
            parts.append(f"inputs: {escape(inputs)}")
            labels = []
            for entry in summary["labels"]:
                text = _shape(entry["shape"]) + " " + entry["dtype"]
                if "classes" in entry:
                    text += f", {entry['classes']} classes"
                labels.append(text)
            if summary.get("class_names"):
                labels.append("classes: " + ", ".join(summary["class_names"][:8]))
            parts.append(f"labels: {escape('; '.join(labels))}")
            parts += [f"note: {escape(n)}" for n in summary.get("notes", [])]
        if preview.error:
            parts.append(f"<span style='color:#c0392b'><b>Cannot train on these data:</b> "
                         f"{escape(preview.error)}</span>")
        elif preview.losses:
            parts.append("loss (auto): " + escape("; ".join(d for _, d in preview.losses)))
        self.preview.setText("<br>".join(parts))
        self.preview.setToolTip(preview.error)


def _shape(shape) -> str:
    return "(" + ", ".join(str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


class ConfigForm(QWidget):
    """Epochs, batch size, optimizer, learning rate + schedule, loss, seed, device, ..."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.epochs = _spin(1, 100_000, 5)
        self.batch_size = _spin(1, 1 << 16, 32)
        self.optimizer = QComboBox()
        self.optimizer.addItems(list(OPTIMIZERS))
        self.weight_decay = QDoubleSpinBox()
        self.weight_decay.setDecimals(4)
        self.weight_decay.setRange(0.0, 1.0)
        self.weight_decay.setSingleStep(0.001)
        self.weight_decay.setValue(0.004)
        self.learning_rate = QComboBox()
        self.learning_rate.setEditable(True)
        self.learning_rate.addItems(LEARNING_RATES)
        self.learning_rate.setCurrentText("1e-3")
        self.schedule = QComboBox()
        self.schedule.addItems(list(SCHEDULES))
        self.schedule.setToolTip("constant; cosine: decays to 0 over the run; step: x0.1 at "
                                 "each third of the run")
        self.loss = QComboBox()
        self.loss.setEditable(True)
        self.loss.setToolTip("Chosen automatically from the model's compile config or its "
                             "output and the labels; pick or type a Keras loss to override")
        self.set_auto_loss("")
        self.seed = _spin(-1, 2**31 - 1, -1)
        self.seed.setSpecialValueText("random")
        self.device = QComboBox()
        self.set_devices([])
        self.mixed_precision = QCheckBox("float16 on GPU, bfloat16 on CPU")
        self.update_sizes = QCheckBox("record |dw|/|w| per layer")
        self.update_sizes.setChecked(True)
        self.update_sizes.setToolTip("Per layer and step, the norm of the applied update over "
                                     "the norm of the weights (what learning-rate multipliers "
                                     "change); shown by the heatmap's 'Update size' view. "
                                     "Costs a copy of the trained weights per step")
        self.cache = QComboBox()
        self.cache.addItems(list(CACHE_MODES))
        self.cache.setToolTip("Cache the outputs of a frozen, cut-off prefix of the model "
                              "(auto: when the result is exactly the same)")
        form = QFormLayout(self)
        form.setContentsMargins(4, 4, 4, 4)
        form.setVerticalSpacing(3)
        for label, widget in (("Epochs", self.epochs), ("Batch size", self.batch_size),
                              ("Optimizer", self.optimizer), ("Weight decay", self.weight_decay),
                              ("Learning rate", self.learning_rate),
                              ("LR schedule", self.schedule), ("Loss", self.loss),
                              ("Seed", self.seed), ("Device", self.device),
                              ("Mixed precision", self.mixed_precision),
                              ("Update sizes", self.update_sizes),
                              ("Feature cache", self.cache)):
            form.addRow(label, widget)
        self.optimizer.currentTextChanged.connect(
            lambda name: self.weight_decay.setEnabled(name == "adamw"))
        self.weight_decay.setEnabled(False)

    def set_auto_loss(self, name: str, reason: str = "") -> None:
        """The first loss entry says what "auto" means for the current data (and why, in
        its tooltip)."""
        current = self.loss.currentText().strip()
        self.loss.blockSignals(True)
        self.loss.clear()
        self.loss.addItem(f"auto: {name}" if name else "auto", None)
        for loss in LOSSES:
            self.loss.addItem(loss, loss)
        if current and not current.startswith("auto"):
            self.loss.setCurrentText(current)
        self.loss.lineEdit().setCursorPosition(0)
        self.loss.setToolTip("Automatic: " + (reason or "chosen when the data are read") +
                             "\nPick or type a Keras loss name to override it.")
        self.loss.blockSignals(False)

    def chosen_loss(self) -> str | None:
        """The loss the user picked or typed; None for automatic."""
        text = self.loss.currentText().strip()
        return None if not text or text.startswith("auto") else text

    def set_devices(self, names: list) -> None:
        current = self.device.currentData()
        self.device.clear()
        self.device.addItem("auto", None)
        for name in names:
            self.device.addItem(name, name)
        if len([n for n in names if n.startswith("/GPU")]) > 1:
            self.device.addItem("all GPUs (MirroredStrategy)", "gpu:all")
        index = self.device.findData(current)
        self.device.setCurrentIndex(max(index, 0))

    def seed_value(self) -> int | None:
        return None if self.seed.value() < 0 else self.seed.value()

    def config(self) -> TrainingConfig:
        """The config the form describes.

        Raises:
            UserError: a value that is not a number or out of range.
        """
        text = self.learning_rate.currentText().strip()
        try:
            learning_rate = float(text)
        except ValueError:
            raise UserError(f"learning rate: '{text}' is not a number") from None
        loss = self.chosen_loss()
        config = TrainingConfig(
            epochs=self.epochs.value(), batch_size=self.batch_size.value(),
            learning_rate=learning_rate, optimizer=self.optimizer.currentText(),
            weight_decay=self.weight_decay.value(), schedule=self.schedule.currentText(),
            loss=loss, seed=self.seed_value(), cache_features=self.cache.currentText(),
            device=self.device.currentData(), mixed_precision=self.mixed_precision.isChecked(),
            update_sizes=self.update_sizes.isChecked())
        if loss is not None:
            from freezestudio.core.training.losses import canonical_name

            config.loss = canonical_name(loss)
        config.validate()
        return config


def _spin(low: int, high: int, value: int) -> QSpinBox:
    box = QSpinBox()
    box.setRange(low, high)
    box.setValue(value)
    return box
