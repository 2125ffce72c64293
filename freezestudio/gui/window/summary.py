"""The summary bar (parameter totals, the recompile marker after edits) and the colour
legend."""

from __future__ import annotations

from PySide6.QtCore import QEvent, Qt
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import (
    QApplication,
    QFrame,
    QHBoxLayout,
    QLabel,
    QSizePolicy,
    QWidget,
)

from freezestudio.gui.common import style

RECOMPILE_TEXT = "Edited: recompile before training with Keras"
RECOMPILE_TIP = (
    "Keras fixes the set of trainable weights when a model is compiled. These edits change "
    "it: if you train this model with Keras yourself, call compile() again (with a new "
    "optimizer) after loading it, or the edits have no effect.\n"
    "FreezeStudio's own training always compiles the current state, so nothing is needed "
    "to train here.")


def _percent(part: int, whole: int) -> str:
    return f" ({100 * part / whole:.1f}%)" if whole else ""


def _lora_share(document, trainable: int, params: int) -> str:
    """With LoRA adapters: what share of the model trains, e.g. "1,507 of 25,283
    trainable: 6%" (the point of LoRA)."""
    adapters = document.adapters()
    if not adapters or not params:
        return ""
    return (f" &nbsp;·&nbsp; LoRA ({len(adapters)} adapters): {trainable:,} of {params:,} "
            f"trainable: {100 * trainable / params:.0f}%")


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
        self.recompile = QLabel(RECOMPILE_TEXT)
        self.recompile.setToolTip(RECOMPILE_TIP)
        self.recompile_icon.setToolTip(RECOMPILE_TIP)
        layout.addWidget(self.totals, 1)
        for marker in (self.recompile_icon, self.recompile):
            # showing the marker must not move the tree below: that repaints all of it
            policy = marker.sizePolicy()
            policy.setRetainSizeWhenHidden(True)
            marker.setSizePolicy(policy)
            layout.addWidget(marker)
        self.update_from(None)

    def update_from(self, document, edited: bool = False) -> None:
        """Shows the document's totals, and the recompile marker if it tells something.

        Args:
            document: the document shown (None: no model).
            edited: whether it differs from its file (unsaved edits). The marker shows only
                then, and only while no FreezeStudio run has compiled the current edits:
                right after opening there is nothing to recompile for.
        """
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
            f"non-trainable {params - trainable:,}"
            + _lora_share(document, trainable, params))
        self.set_recompile(edited and bool(document.needs_recompile))

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
        # The legend never widens the window: on a narrow one its end is cut off instead.
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)

    def changeEvent(self, event) -> None:
        super().changeEvent(event)
        if event.type() == QEvent.Type.PaletteChange:
            for swatch in self.swatches:
                swatch.retint()
