"""Running something once a widget has painted what it shows now."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QEvent, QObject, QTimer


class AfterPaint(QObject):
    """Calls the functions given to `then` right after `widget`'s next paint event (at
    once when the widget is not visible: it paints nothing).

    The window uses it to let the TensorFlow import and the model load go on only once
    the tree read from the file's config is on screen (`import_gate`).
    """

    def __init__(self, widget, parent: QObject | None = None):
        super().__init__(parent)
        self._widget = widget
        self._callbacks: list[Callable[[], None]] = []
        widget.installEventFilter(self)

    def then(self, callback: Callable[[], None]) -> None:
        if not self._widget.isVisible():
            callback()
            return
        self._callbacks.append(callback)
        self._widget.update()

    def flush(self) -> None:
        """Calls the waiting functions now (the widget will not paint: closing)."""
        callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback()

    def eventFilter(self, watched, event) -> bool:
        if event.type() == QEvent.Type.Paint and self._callbacks:
            QTimer.singleShot(0, self, self.flush)  # after this paint event has run
        return False
