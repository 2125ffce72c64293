"""What the app remembers between runs (QSettings, INI format): recent files, geometry;
and the window's geometry on a first run, when nothing is remembered yet."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QByteArray, QMargins, QRect, QSettings

ORGANIZATION = "FreezeStudio"
APPLICATION = "FreezeStudio"
MAX_RECENT = 10

FRAME = QMargins(8, 40, 8, 8)
"""Room left around the window for the frame and title bar the window manager adds."""
FULL_WIDTH_BELOW = 1500
"""Screens narrower than this (1366, 1440) get a window as wide as they allow."""
FULL_HEIGHT_BELOW = 900
"""Screens lower than this (768, 800) get a window as high as they allow."""
FIRST_RUN_WIDTH = (1440, 1800)
FIRST_RUN_HEIGHT = (860, 1100)
"""Least and most size of a first-run window on larger screens (then 85% of the screen)."""


def first_run_geometry(available: QRect) -> QRect:
    """The window's geometry (without its frame) when no geometry is stored yet.

    Small screens get all the room they have, so that every column of the tree, up to
    Freeze, Stop gradient and Gradient, is visible at 1366x768; larger screens get 85% of
    it, at least `FIRST_RUN_WIDTH[0]` x `FIRST_RUN_HEIGHT[0]`, centred.

    Args:
        available: the screen's available geometry (without task bars and docks).

    Returns:
        A rectangle inside `available` with room for the window frame (`FRAME`).
    """
    room = available.marginsRemoved(FRAME)
    width, height = max(room.width(), 1), max(room.height(), 1)
    if width >= FULL_WIDTH_BELOW:
        width = min(width, max(FIRST_RUN_WIDTH[0], min(FIRST_RUN_WIDTH[1], int(0.85 * width))))
    if height >= FULL_HEIGHT_BELOW:
        height = min(height,
                     max(FIRST_RUN_HEIGHT[0], min(FIRST_RUN_HEIGHT[1], int(0.85 * height))))
    left = room.left() + (room.width() - width) // 2
    top = room.top() + (room.height() - height) // 2
    return QRect(left, top, width, height)


def _as_list(value) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value] if value else []
    return [str(v) for v in value]


class Settings:
    """Typed access to the app's QSettings.

    Args:
        qsettings: the store to use; defaults to the user's INI file
            (`$XDG_CONFIG_HOME/FreezeStudio/FreezeStudio.ini` on Linux).
    """

    def __init__(self, qsettings: QSettings | None = None):
        self._store = qsettings or QSettings(QSettings.Format.IniFormat,
                                             QSettings.Scope.UserScope,
                                             ORGANIZATION, APPLICATION)

    # --- recent files -----------------------------------------------------------
    def recent_files(self) -> list[str]:
        return _as_list(self._store.value("recent_files"))

    def add_recent(self, path) -> None:
        path = str(Path(path).resolve())
        files = [path] + [f for f in self.recent_files() if f != path]
        self._store.setValue("recent_files", files[:MAX_RECENT])

    def remove_recent(self, path) -> None:
        path = str(path)
        self._store.setValue("recent_files", [f for f in self.recent_files() if f != path])

    def clear_recent(self) -> None:
        self._store.setValue("recent_files", [])

    # --- folders and geometry ---------------------------------------------------------
    def last_directory(self) -> str:
        return str(self._store.value("last_directory", "") or "")

    def set_last_directory(self, path) -> None:
        path = Path(path)
        self._store.setValue("last_directory", str(path if path.is_dir() else path.parent))

    def save_window(self, window) -> None:
        self._store.setValue("window/geometry", window.saveGeometry())
        self._store.setValue("window/state", window.saveState())

    def restore_window(self, window) -> bool:
        """Restores geometry and dock/toolbar state; False if nothing was stored."""
        geometry = self._store.value("window/geometry")
        if not isinstance(geometry, QByteArray | bytes) or not geometry:
            return False
        window.restoreGeometry(geometry)
        state = self._store.value("window/state")
        if isinstance(state, QByteArray | bytes) and state:
            window.restoreState(state)
        return True

    def value(self, key: str, default=None):
        return self._store.value(key, default)

    def set_value(self, key: str, value) -> None:
        self._store.setValue(key, value)

    def sync(self) -> None:
        self._store.sync()
