"""File > Export… in the main window: the action, its toolbar icon and the dialog it opens
(`dialog.ExportDialog`), on the export feature's own `TaskHost` (one export at a time)."""

from __future__ import annotations

from PySide6.QtCore import QObject, QPointF, Qt, Slot
from PySide6.QtGui import QAction, QIcon, QPainter, QPalette, QPen, QPixmap
from PySide6.QtWidgets import QApplication

from freezestudio.gui.background.tasks import BackgroundTask
from freezestudio.gui.background.threads import TaskHost
from freezestudio.gui.common import dialogs
from freezestudio.gui.export.dialog import ExportDialog
from freezestudio.gui.export.quantization import training_data_source


def export_icon() -> QIcon:
    """An arrow leaving a tray, drawn in the palette's text colour."""
    pixmap = QPixmap(32, 32)
    pixmap.fill(Qt.GlobalColor.transparent)
    painter = QPainter(pixmap)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    color = QApplication.palette().color(QPalette.ColorRole.Text)
    painter.setPen(QPen(color, 3, Qt.PenStyle.SolidLine, Qt.PenCapStyle.RoundCap,
                        Qt.PenJoinStyle.RoundJoin))
    painter.drawPolyline([QPointF(5, 17), QPointF(5, 27), QPointF(27, 27), QPointF(27, 17)])
    painter.drawLine(QPointF(16, 21), QPointF(16, 4))
    painter.drawPolyline([QPointF(9, 11), QPointF(16, 4), QPointF(23, 11)])
    painter.end()
    return QIcon(pixmap)


class ExportFeature(QObject, BackgroundTask):
    """File > Export… for a `MainWindow` (installed by `install_export`)."""

    def __init__(self, window):
        super().__init__(window)
        self.window = window
        self.runner = TaskHost("freezestudio-export", self)
        self.dialog: ExportDialog | None = None
        self.action = QAction(export_icon(), "&Export…", window)
        self.action.setShortcut("Ctrl+E")
        self.action.setIconText("Export")
        self.action.setToolTip("Export for deployment (SavedModel, TFLite, ONNX, frozen "
                               "graph) or as .keras/.h5, verified against the model (Ctrl+E)")
        self.action.setStatusTip(self.action.toolTip())
        self.action.triggered.connect(self.open_dialog)
        self.action.setEnabled(window.document is not None)
        window.model.modelReset.connect(self._on_document_changed)

    @Slot()
    def _on_document_changed(self) -> None:
        self.action.setEnabled(self.window.loaded_document is not None)

    @Slot()
    def open_dialog(self, modal: bool = True) -> ExportDialog | None:
        """Shows the Export dialog (modal; `modal=False` returns it shown, for tests)."""
        window = self.window
        if window.loaded_document is None:
            return None
        training = getattr(window, "training", None)
        if training is not None and training.is_running():
            dialogs.show_error(window, "Cannot export now",
                               "a training run is in progress: export when it has ended")
            return None
        self.dialog = ExportDialog(window.loaded_document, self.runner, window,
                                   window.settings.last_directory(),
                                   training_data_source(window, window.loaded_document))
        if modal:
            self.dialog.exec()
        else:
            self.dialog.show()
        return self.dialog

    def request_shutdown(self) -> None:
        self.runner.shutdown(timeout_s=0)

    def shutdown(self) -> None:
        self.runner.shutdown()


def install_export(window) -> ExportFeature:
    """Adds File > Export… (before Close Model) and a toolbar button to a `MainWindow`.

    Returns:
        The feature object (keep it on the window, e.g. `window.export`).
    """
    feature = ExportFeature(window)
    file_menu = window.actions.file_menu
    file_menu.insertAction(window.actions.close_model, feature.action)
    file_menu.insertSeparator(window.actions.close_model)
    window.actions.toolbar.addAction(feature.action)
    window.background_tasks.append(feature)
    return feature
