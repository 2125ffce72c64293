"""Opening a model by dropping its file (or SavedModel folder) on the window."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QTimer


class FileDropMixin:
    """Drag-and-drop for the main window; expects `open_path` and `_saving` (no drop is
    accepted while a save runs)."""

    @staticmethod
    def dropped_path(mime) -> str | None:
        """The local file or folder a drop carries (a SavedModel's folder for its
        `saved_model.pb`), or None."""
        if not mime.hasUrls():
            return None
        for url in mime.urls():
            if url.isLocalFile():
                path = Path(url.toLocalFile())
                if path.name in ("saved_model.pb", "saved_model.pbtxt"):
                    path = path.parent
                return str(path)
        return None

    def dragEnterEvent(self, event) -> None:
        if self.dropped_path(event.mimeData()) and not self._saving:
            event.acceptProposedAction()
        else:
            event.ignore()

    def dragMoveEvent(self, event) -> None:
        self.dragEnterEvent(event)

    def dropEvent(self, event) -> None:
        path = self.dropped_path(event.mimeData())
        if path is None:
            event.ignore()
            return
        event.acceptProposedAction()
        QTimer.singleShot(0, lambda: self.open_path(path))  # leave the drop handler first
