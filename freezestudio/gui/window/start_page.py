"""The page shown without a model: Open…, recent files and the bundled demo models."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QFont
from PySide6.QtWidgets import (
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from freezestudio.gui.common import style
from freezestudio.resources import DEMO_DIR

DEMO_DESCRIPTIONS = {
    "cnn_transfer": "A small CNN: pre-trained convolutional base (frozen) + a new head",
    "text_classifier": "Embedding + dense text classifier (keep the embedding with a "
                       "stop-gradient: text_plan.json)",
}
PATH_ROLE = Qt.ItemDataRole.UserRole + 1


def demo_models(directory: Path = DEMO_DIR) -> list[Path]:
    """The bundled demo models (*.keras bundled in the package), sorted by name."""
    return sorted(directory.glob("*.keras")) if directory.is_dir() else []


class StartPage(QWidget):
    """Signals: open_requested() for the Open… button; path_chosen(str) for a list entry."""

    open_requested = Signal()
    open_folder_requested = Signal()
    path_chosen = Signal(str)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(40, 30, 40, 30)
        title_row = QHBoxLayout()
        logo = QLabel()
        logo.setPixmap(style.app_icon().pixmap(56, 56))
        title = QLabel("FreezeStudio")
        font = QFont(title.font())
        font.setPointSizeF(font.pointSizeF() * 2.0)
        font.setBold(True)
        title.setFont(font)
        subtitle = QLabel("Choose what a Keras model may learn: freeze layers and weights, "
                          "cut gradients, check what still trains.")
        subtitle.setWordWrap(True)
        title_box = QVBoxLayout()
        title_box.addWidget(title)
        title_box.addWidget(subtitle)
        title_row.addWidget(logo)
        title_row.addLayout(title_box, 1)
        outer.addLayout(title_row)
        buttons = QHBoxLayout()
        self.open_button = QPushButton("Open model…")
        self.open_button.setDefault(True)
        self.open_button.setMinimumHeight(32)
        self.folder_button = QPushButton("Open SavedModel folder…")
        self.folder_button.setMinimumHeight(32)
        buttons.addWidget(self.open_button)
        buttons.addWidget(self.folder_button)
        buttons.addStretch(1)
        outer.addSpacing(12)
        outer.addLayout(buttons)
        hint = QLabel("…or drop a .keras / .h5 file or a SavedModel folder on this window.")
        hint.setEnabled(False)
        outer.addWidget(hint)
        outer.addSpacing(12)
        grid = QGridLayout()
        self.recent = self._list()
        self.demos = self._list()
        grid.addWidget(self._heading("Recent files"), 0, 0)
        grid.addWidget(self._heading("Demo models"), 0, 1)
        grid.addWidget(self.recent, 1, 0)
        grid.addWidget(self.demos, 1, 1)
        grid.setColumnStretch(0, 1)
        grid.setColumnStretch(1, 1)
        outer.addLayout(grid, 1)
        self.open_button.clicked.connect(self.open_requested)
        self.folder_button.clicked.connect(self.open_folder_requested)
        self.set_demos(demo_models())

    def _heading(self, text: str) -> QLabel:
        label = QLabel(text)
        font = QFont(label.font())
        font.setBold(True)
        label.setFont(font)
        return label

    def _list(self) -> QListWidget:
        widget = QListWidget()
        widget.setIconSize(QSize(16, 16))
        widget.setWordWrap(True)
        widget.itemActivated.connect(self._activated)
        return widget

    def _activated(self, item: QListWidgetItem) -> None:
        path = item.data(PATH_ROLE)
        if path:
            self.path_chosen.emit(path)

    def set_recent(self, paths: list[str]) -> None:
        self.recent.clear()
        for path in paths:
            item = QListWidgetItem(f"{Path(path).name}\n{Path(path).parent}")
            item.setData(PATH_ROLE, path)
            item.setToolTip(path)
            if not Path(path).exists():
                item.setText(f"{Path(path).name} (missing)\n{Path(path).parent}")
                item.setForeground(self.palette().placeholderText())
            self.recent.addItem(item)
        if not paths:
            item = QListWidgetItem("No recent files yet")
            item.setFlags(Qt.ItemFlag.NoItemFlags)
            self.recent.addItem(item)

    def set_demos(self, paths: list[Path]) -> None:
        self.demos.clear()
        for path in paths:
            description = DEMO_DESCRIPTIONS.get(path.stem, "")
            item = QListWidgetItem(f"{path.name}\n{description}" if description else path.name)
            item.setData(PATH_ROLE, str(path))
            item.setToolTip(str(path))
            item.setIcon(style.app_icon())
            self.demos.addItem(item)
        if not paths:
            item = QListWidgetItem("No demo models found in the installed package")
            item.setFlags(Qt.ItemFlag.NoItemFlags)
            self.demos.addItem(item)
