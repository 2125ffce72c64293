"""The summary bar (parameter totals, recompile marker) and the colour legend."""

from __future__ import annotations

from PySide6.QtCore import QEvent, Qt
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import QApplication, QFrame, QHBoxLayout, QLabel, QWidget

from freezestudio.gui.common import style


def _percent(part: int, whole: int) -> str:
    return f" ({100 * part / whole:.1f}%)" if whole else ""


class SummaryBar(QFrame):
    """Totals of the whole model, refreshed on every edit."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setFrameShape(QFrame.Shape.StyledPanel)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(8, 3, 8, 3)
        self.totals = QLabel()
        self.totals.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.recompile_icon = QLabel()
        self.recompile_icon.setPixmap(style.pixmap(style.WARNING, 16))
        self.recompile = QLabel("Must recompile before training")
        self.recompile.setToolTip(
            "Keras fixes the trainable set at compile(): after any edit, compile the model "
            "again (with a new optimizer) before training, or the edit has no effect.")
        layout.addWidget(self.totals, 1)
        layout.addWidget(self.recompile_icon)
        layout.addWidget(self.recompile)
        self.update_from(None)

    def update_from(self, document) -> None:
        """Shows the document's totals."""
        if document is None:
            self.totals.setText("No model")
            self.set_recompile(False)
            return
        counts = document.counts()
        params, trainable = counts.params, counts.trainable
        receiving = document.receiving_params()
        self.totals.setText(
            f"<b>{params:,}</b> params &nbsp;·&nbsp; "
            f"trainable <b>{trainable:,}</b>{_percent(trainable, params)}"
            f" &nbsp;·&nbsp; receiving gradient <b>{receiving:,}</b>"
            f"{_percent(receiving, params)} &nbsp;·&nbsp; "
            f"non-trainable {params - trainable:,}")
        self.set_recompile(bool(document.needs_recompile))

    def set_recompile(self, needed: bool) -> None:
        self.recompile.setVisible(needed)
        self.recompile_icon.setVisible(needed)

    def text(self) -> str:
        return self.totals.text()


class _Swatch(QLabel):
    """A legend label on the row tint of its state (re-tinted when the palette changes)."""

    def __init__(self, kind: str, tinted: bool, text: str, tip: str):
        super().__init__()
        self.kind, self.tinted = kind, tinted
        self.setText(text)
        self.setContentsMargins(4, 1, 4, 1)
        self.setToolTip(tip)
        self.setAutoFillBackground(tinted)
        self._retinting = False
        self.retint()

    def retint(self) -> None:
        """Tints from the application palette (setting ours sends PaletteChange again)."""
        if not self.tinted or self._retinting:
            return
        self._retinting = True
        try:
            text = QApplication.palette().color(QPalette.ColorRole.Text).name()
            self.setStyleSheet(f"background-color: {style.tint(self.kind).name()}; "
                               f"color: {text};")
        finally:
            self._retinting = False


class Legend(QWidget):
    """What the colours and icons mean."""

    ITEMS = (
        (style.FROZEN, True, "Frozen", "trainable=False: its weights do not change in training"),
        (style.PARTIAL, False, "Partly frozen", "some weights inside are frozen, some not"),
        (style.TRAINABLE, False, "Trainable", "trainable and reached by gradient"),
        (style.NO_GRADIENT, True, "Receives no gradient",
         "trainable, but no gradient reaches it (cut by a stop-gradient or no differentiable "
         "path): it will not learn"),
        (style.STOP, False, "Stop-gradient point", "no gradient flows back through this output"),
    )

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(4, 2, 4, 2)
        layout.setSpacing(6)
        self.swatches: list[_Swatch] = []
        for kind, tinted, text, tip in self.ITEMS:
            icon = QLabel()
            icon.setPixmap(style.pixmap(kind, 16))
            icon.setToolTip(tip)
            layout.addWidget(icon)
            swatch = _Swatch(kind, tinted, text, tip)
            self.swatches.append(swatch)
            layout.addWidget(swatch)
            layout.addSpacing(8)
        layout.addStretch(1)

    def changeEvent(self, event) -> None:
        super().changeEvent(event)
        if event.type() == QEvent.Type.PaletteChange:
            for swatch in self.swatches:
                swatch.retint()
