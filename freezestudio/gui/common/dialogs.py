"""Every modal question the app asks, as small functions.

The rest of the GUI calls these through the module (`dialogs.show_error(...)`), so tests
can replace them with functions that answer at once instead of blocking.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QStandardPaths
from PySide6.QtWidgets import QCheckBox, QFileDialog, QMessageBox, QWidget

MODEL_FILTER = "Keras models (*.keras *.h5 *.hdf5);;SavedModel (saved_model.pb);;All files (*)"
PLAN_FILTER = "FreezeStudio plans (*.json);;All files (*)"

SAVE = "save"
DISCARD = "discard"
CANCEL = "cancel"
MERGE_LORA = "Merge LoRA adapters into the kernels"
"""The check box of Save As (`ask_merge_lora`) and of the Export dialog."""


def user_folder() -> Path:
    """Where copies of templates go by default: the user's documents folder, else home."""
    documents = QStandardPaths.writableLocation(
        QStandardPaths.StandardLocation.DocumentsLocation)
    return Path(documents) if documents and Path(documents).is_dir() else Path.home()


def show_error(parent: QWidget | None, title: str, message: str, details: str = "") -> None:
    """An error the user can act on: the core's one-line message, traceback hidden."""
    box = QMessageBox(QMessageBox.Icon.Critical, title, message, QMessageBox.StandardButton.Ok,
                      parent)
    if details:
        box.setDetailedText(details)
    box.exec()


def show_info(parent: QWidget | None, title: str, message: str) -> None:
    QMessageBox.information(parent, title, message)


def ask_trust(parent: QWidget | None, message: str) -> bool:
    """Asks whether to load a file that carries code (Lambda layers and the like)."""
    box = QMessageBox(QMessageBox.Icon.Warning, "This model contains code", message,
                      QMessageBox.StandardButton.Cancel, parent)
    box.setInformativeText("Opening it runs that code with your permissions. Open it only if "
                           "you trust where the file came from.")
    trust = box.addButton("Trust and open", QMessageBox.ButtonRole.AcceptRole)
    box.setDefaultButton(QMessageBox.StandardButton.Cancel)
    box.exec()
    return box.clickedButton() is trust


def ask_custom_module(parent: QWidget | None, class_name: str, message: str) -> str | None:
    """Asks for the Python file that defines a missing custom class; None if declined."""
    box = QMessageBox(QMessageBox.Icon.Question, f"Custom class '{class_name}' needed", message,
                      QMessageBox.StandardButton.Cancel, parent)
    box.setInformativeText("Choose the .py file that defines and registers it. The file is "
                           "imported, so it runs as code: choose only a file you trust.")
    choose = box.addButton("Choose module…", QMessageBox.ButtonRole.AcceptRole)
    box.exec()
    if box.clickedButton() is not choose:
        return None
    path, _ = QFileDialog.getOpenFileName(parent, f"Module defining {class_name}", "",
                                          "Python files (*.py)")
    return path or None


def ask_unsaved(parent: QWidget | None, name: str) -> str:
    """Save, discard or cancel for unsaved edits; returns SAVE, DISCARD or CANCEL."""
    buttons = (QMessageBox.StandardButton.Save | QMessageBox.StandardButton.Discard
               | QMessageBox.StandardButton.Cancel)
    answer = QMessageBox.question(parent, "Unsaved changes",
                                  f"Save the changes to {name} before closing it?",
                                  buttons, QMessageBox.StandardButton.Save)
    return {QMessageBox.StandardButton.Save: SAVE,
            QMessageBox.StandardButton.Discard: DISCARD}.get(answer, CANCEL)


def ask_merge_lora(parent: QWidget | None, count: int) -> bool | None:
    """Save As of a document with `count` LoRA adapters: True writes them merged into
    their kernels (a plain model, as a copy), False keeps them (the default); None
    cancels the save."""
    box = QMessageBox(QMessageBox.Icon.Question, "LoRA adapters",
                      f"The model has {count} LoRA adapter(s).",
                      QMessageBox.StandardButton.Save | QMessageBox.StandardButton.Cancel,
                      parent)
    box.setInformativeText("Kept, the file trains on with them. Merged, it is a plain model "
                           "(no adapter variables) saved as a copy: this window keeps the "
                           "adapters and its own file.")
    merge = QCheckBox(MERGE_LORA)
    box.setCheckBox(merge)
    box.setDefaultButton(QMessageBox.StandardButton.Save)
    if box.exec() != QMessageBox.StandardButton.Save:
        return None
    return merge.isChecked()


def get_open_path(parent: QWidget | None, directory: str = "") -> str | None:
    """A model file (or a SavedModel's saved_model.pb) to open."""
    path, _ = QFileDialog.getOpenFileName(parent, "Open model", directory, MODEL_FILTER)
    if path and Path(path).name in ("saved_model.pb", "saved_model.pbtxt"):
        return str(Path(path).parent)
    return path or None


def get_open_directory(parent: QWidget | None, directory: str = "") -> str | None:
    path = QFileDialog.getExistingDirectory(parent, "Open SavedModel folder", directory)
    return path or None


def get_save_path(parent: QWidget | None, suggested: str, directory_only: bool) -> str | None:
    """Where to save: a .keras/.h5 file, or a folder for generic SavedModels."""
    if directory_only:
        path, _ = QFileDialog.getSaveFileName(parent, "Save SavedModel as folder", suggested,
                                              "SavedModel folder (*)")
        return path or None
    path, chosen = QFileDialog.getSaveFileName(parent, "Save model as", suggested,
                                               "Keras (*.keras);;HDF5 (*.h5)")
    if path and not Path(path).suffix:
        path += ".h5" if chosen.startswith("HDF5") else ".keras"
    return path or None


def get_plan_path(parent: QWidget | None, directory: str, save: bool) -> str | None:
    if save:
        path, _ = QFileDialog.getSaveFileName(parent, "Save plan", directory, PLAN_FILTER)
        if path and not Path(path).suffix:
            path += ".json"
    else:
        path, _ = QFileDialog.getOpenFileName(parent, "Apply plan", directory, PLAN_FILTER)
    return path or None
