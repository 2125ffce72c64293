"""Refusing the user's input to a widget for a moment, without repainting it.

`setEnabled(False)` also greys a widget out, and greying out and back repaints all of
it twice: for the layer tree of a large model that is the longest GUI-thread work of a
short locked operation (a stop-gradient rebuild). An `InputLock` keeps the widget as
it looks and drops the mouse, wheel, keyboard, context-menu and drop events sent to it
or to anything inside it; the keys of shortcuts are taken too, so a shortcut does not
act on the widget's behalf while it is locked.
"""

from __future__ import annotations

from PySide6.QtCore import QEvent, QObject
from PySide6.QtWidgets import QApplication, QWidget

_BLOCKED = frozenset({
    QEvent.Type.MouseButtonPress, QEvent.Type.MouseButtonRelease,
    QEvent.Type.MouseButtonDblClick, QEvent.Type.Wheel, QEvent.Type.KeyPress,
    QEvent.Type.KeyRelease, QEvent.Type.ContextMenu, QEvent.Type.DragEnter,
    QEvent.Type.DragMove, QEvent.Type.Drop,
})


class InputLock(QObject):
    """While `active`, the user's input to `widget` (and its children) is dropped.

    Args:
        widget: the widget to lock; the lock is its child.
    """

    def __init__(self, widget: QWidget):
        super().__init__(widget)
        self._widget = widget
        self._active = False

    @property
    def active(self) -> bool:
        return self._active

    def set_active(self, active: bool) -> None:
        """Locks (True) or unlocks the widget; nothing is repainted."""
        if active == self._active:
            return
        self._active = active
        app = QApplication.instance()
        if active:
            app.installEventFilter(self)
        else:
            app.removeEventFilter(self)

    def eventFilter(self, watched, event) -> bool:
        kind = event.type()
        if kind not in _BLOCKED and kind != QEvent.Type.ShortcutOverride:
            return False
        if not isinstance(watched, QWidget) or not (
                watched is self._widget or self._widget.isAncestorOf(watched)):
            return False
        if kind == QEvent.Type.ShortcutOverride:
            event.accept()  # the key goes to the (locked) widget, not to a shortcut
        return True
