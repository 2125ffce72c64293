"""Long-running features (training, export) that the main window must consult before it
replaces the document, saves it, or shuts down."""

from __future__ import annotations


class BackgroundTask:
    """The window's questions to a feature that may be running work in the background.

    Each feature registers itself in `MainWindow.background_tasks`; the defaults allow
    everything and have nothing to stop.
    """

    def may_replace_document(self) -> bool:
        """False to keep the current document (after asking or telling the user)."""
        return True

    def may_save(self) -> bool:
        """False while saving must wait (after telling the user)."""
        return True

    def request_shutdown(self) -> None:
        """Asks the feature's work to stop without waiting: closing asks every feature
        first and then waits for each (`shutdown`), so their stops overlap."""

    def shutdown(self) -> None:
        """Stops the feature's work and waits for its thread."""
