"""The page shown while a model loads: what is happening, a busy bar and Cancel."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QLabel, QProgressBar, QPushButton, QVBoxLayout, QWidget


class BusyPage(QWidget):
    """Signals: cancel_requested()."""

    cancel_requested = Signal()

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        layout = QVBoxLayout(self)
        layout.addStretch(1)
        self.label = QLabel()
        self.label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.label.setWordWrap(True)
        self.detail = QLabel()
        self.detail.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.detail.setEnabled(False)
        self.bar = QProgressBar()
        self.bar.setRange(0, 0)  # indeterminate: Keras reports no progress while loading
        self.bar.setMaximumWidth(420)
        self.bar.setTextVisible(False)
        self.cancel = QPushButton("Cancel")
        self.cancel.setMaximumWidth(120)
        self.cancel.clicked.connect(self.cancel_requested)
        layout.addWidget(self.label)
        layout.addWidget(self.bar, 0, Qt.AlignmentFlag.AlignHCenter)
        layout.addWidget(self.detail)
        layout.addWidget(self.cancel, 0, Qt.AlignmentFlag.AlignHCenter)
        layout.addStretch(2)

    def start(self, text: str, detail: str = "") -> None:
        self.label.setText(text)
        self.detail.setText(detail)

    def set_detail(self, text: str) -> None:
        self.detail.setText(text)
