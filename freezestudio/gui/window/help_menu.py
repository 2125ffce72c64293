"""Help > About (versions and the devices TensorFlow sees) and Help > Open Log Folder.

The About box's versions come from the installed distributions' metadata; the device list
needs TensorFlow, so it is asked for on the window's worker thread when the box first opens
(TensorFlow is never imported for the window to start).
"""

from __future__ import annotations

from html import escape

import PySide6
from PySide6.QtCore import Qt, QUrl, qVersion
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QLabel, QVBoxLayout

from freezestudio.core.diagnostics.log_file import log_dir
from freezestudio.core.diagnostics.versions import library_versions, visible_devices
from freezestudio.gui.common import style

DEVICES_PENDING = "looking…"
ABOUT_WIDTH = 460


class AboutDialog(QDialog):
    """What FreezeStudio is and what it runs with; `versions` and `devices` hold what the
    box shows (`devices` is `DEVICES_PENDING` until TensorFlow has answered)."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setWindowTitle("About FreezeStudio")
        self.versions = {**library_versions(), "PySide6": PySide6.__version__, "Qt": qVersion()}
        self.devices = DEVICES_PENDING
        logo = QLabel()
        logo.setPixmap(style.app_icon().pixmap(64, 64))
        self.label = QLabel()
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextBrowserInteraction)
        self.label.setWordWrap(True)
        self.label.setMinimumWidth(ABOUT_WIDTH)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(logo)
        layout.addWidget(self.label)
        layout.addWidget(buttons)
        self._render()

    def set_devices(self, devices: list[str]) -> None:
        self.devices = ", ".join(devices) if devices else "none"
        self._render()

    def devices_failed(self, job) -> None:
        self.devices = f"unknown ({type(job.error).__name__}: {job.error})"
        self._render()

    def _render(self) -> None:
        rows = "".join(f"<tr><td>{escape(name)}</td><td>{escape(version)}</td></tr>"
                       for name, version in self.versions.items())
        self.label.setText(
            f"<h3>FreezeStudio {escape(self.versions['FreezeStudio'])}</h3>"
            "<p>Edit what a Keras/TensorFlow model may learn: freeze layers and weights, insert "
            "stop-gradient points, and check which weights receive gradient.</p>"
            f"<table cellspacing='4'>{rows}"
            f"<tr><td>Devices</td><td>{escape(self.devices)}</td></tr></table>"
            f"<p>Log file folder: {escape(str(log_dir()))}</p>")


def show_about(window) -> AboutDialog:
    """Shows the window's About box (one per window; devices are asked for once)."""
    dialog = getattr(window, "about_dialog", None)
    if dialog is None:
        dialog = window.about_dialog = AboutDialog(window)
        window.runner.submit(lambda state: visible_devices(), on_done=dialog.set_devices,
                             on_error=dialog.devices_failed)
    dialog.show()
    dialog.raise_()
    dialog.activateWindow()
    return dialog


def open_log_folder() -> QUrl:
    """Opens the log file's folder in the desktop's file manager (creating it, so there is
    something to open before the first failure); returns the URL it asked for."""
    folder = log_dir()
    folder.mkdir(parents=True, exist_ok=True)
    url = QUrl.fromLocalFile(str(folder))
    QDesktopServices.openUrl(url)
    return url
