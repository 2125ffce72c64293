"""Refusing the user's input to a widget for a moment, without repainting it.

`setEnabled(False)` also greys a widget out, and greying out and back repaints all of
it twice: for the layer tree of a large model that is the longest GUI-thread work of a
short locked operation (a stop-gradient rebuild). An `InputLock` keeps the widget as
it looks and drops the mouse, wheel, keyboard, context-menu and drop events sent to it
or to anything inside it; the keys of shortcuts are taken too, so a shortcut does not
act on the widget's behalf while it is locked.
"""

from __future__ import annotations

import contextlib

from PySide6.QtCore import QEvent, QObject
from PySide6.QtWidgets import QWidget

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
        self._targets: list[QWidget] = []

    @property
    def active(self) -> bool:
        return self._active

    def set_active(self, active: bool) -> None:
        """Locks (True) or unlocks the widget; nothing is repainted.

        The lock filters the events of the widget and of each widget inside it at the
        time of locking, not the application's: an application-wide filter hands every
        event of every object to Python, and the first objects of classes Qt does not
        export made PySide set up the Python types of whole modules (~100-230 ms on the
        GUI thread at a NASNetMobile toggle)."""
        if active == self._active:
            return
        self._active = active
        if active:
            self._targets = [self._widget, *self._widget.findChildren(QWidget)]
            for target in self._targets:
                target.installEventFilter(self)
            return
        for target in self._targets:
            with contextlib.suppress(RuntimeError):  # deleted while locked
                target.removeEventFilter(self)
        self._targets = []

    def eventFilter(self, watched, event) -> bool:
        kind = event.type()
        if kind == QEvent.Type.ShortcutOverride:
            event.accept()  # the key goes to the (locked) widget, not to a shortcut
            return True
        return kind in _BLOCKED
