"""What the app remembers between runs (QSettings, INI format): recent files, geometry."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QByteArray, QSettings

ORGANIZATION = "FreezeStudio"
APPLICATION = "FreezeStudio"
MAX_RECENT = 10


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
