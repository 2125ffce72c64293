"""Small pieces of the training session: the panel's run states, questions and file
choosers (module functions, so tests can answer them), the undo command of a run, the
tree selection as layers, the outcome as lines, and saving the plots (PNG) and metrics
(CSV)."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

from PySide6.QtGui import QUndoCommand
from PySide6.QtWidgets import QFileDialog, QMessageBox

from freezestudio.core.errors import UserError
from freezestudio.core.model.tree import LayerNode, WeightNode
from freezestudio.core.training.config import CANCELLED, COMPLETED
from freezestudio.core.training.integrity import WeightSnapshot
from freezestudio.gui.common import dialogs


class PanelState(str, Enum):
    """Where the training panel's run is (compares equal to its lower-case name)."""

    IDLE = "idle"  # no run: the settings can change, Start is possible
    PREPARING = "preparing"  # started: reading data, building, tracing the first step
    RUNNING = "running"
    PAUSED = "paused"
    STOPPING = "stopping"  # Stop was asked for: the run ends after its current step


def ask_stop_training(parent) -> bool:
    """Asks whether to stop the running training; True to stop."""
    answer = QMessageBox.question(
        parent, "Training in progress",
        "A training run is in progress. Stop it? The weights keep what the run has "
        "learned so far (one undo step).",
        QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
        QMessageBox.StandardButton.No)
    return answer == QMessageBox.StandardButton.Yes


def get_png_path(parent, suggested: str) -> str | None:
    path, _ = QFileDialog.getSaveFileName(parent, "Save plots", suggested, "PNG image (*.png)")
    if path and not path.lower().endswith(".png"):
        path += ".png"
    return path or None


def get_csv_path(parent, suggested: str) -> str | None:
    path, _ = QFileDialog.getSaveFileName(parent, "Save metrics", suggested, "CSV (*.csv)")
    if path and not path.lower().endswith(".csv"):
        path += ".csv"
    return path or None


class TrainingRunCommand(QUndoCommand):
    """A training run that already happened: undo restores the weights from before it,
    redo the trained ones (only the weights the run changed are kept)."""

    def __init__(self, document, text: str, before: dict, after: dict, on_change):
        super().__init__(text)
        self._document = document
        self._before = WeightSnapshot(before)
        self._after = WeightSnapshot(after)
        self._on_change = on_change
        self._first = True

    def redo(self) -> None:
        if self._first:  # the run itself already trained the weights
            self._first = False
            return
        self._after.restore(self._document)
        self._on_change()

    def undo(self) -> None:
        self._before.restore(self._document)
        self._on_change()


def layer_paths_of(nodes) -> list:
    """Layers with weights for a tree selection (a container: the layers inside it;
    the top model alone means no particular layer)."""
    paths = []
    for node in nodes:
        if isinstance(node, WeightNode):
            node = node.layer
        if not isinstance(node, LayerNode) or node.parent is None:
            continue
        paths += [n.path for n in node.walk() if n.weights and n.path not in paths]
    return paths


def outcome_lines(outcome) -> tuple[list, bool]:
    """The lines to show for a run's outcome, and whether it went well."""
    result = outcome.result
    if result is None:
        return [f"Not started: {outcome.error}"], False
    loss = f"{result.final_loss:.4f}" if result.final_loss is not None else "-"
    lines = [f"{result.status}: {result.steps} steps in {result.seconds:.1f} s "
             f"({result.steps_per_second:.1f} steps/s), final loss {loss}"]
    if result.message:
        lines.append(result.message)
    if result.integrity is not None:
        lines += result.integrity.summary_lines()
    ok = result.status in (COMPLETED, CANCELLED) and \
        (result.integrity is None or result.integrity.ok)
    return lines, ok


def _suggested(window, name: str) -> str:
    folder = window.settings.last_directory() or str(Path.home())
    return str(Path(folder).resolve() / name)


def save_plots(window, plots) -> None:
    """Asks where, then saves the plots as one PNG (errors as a dialog)."""
    path = get_png_path(window, _suggested(window, "training_plots.png"))
    if path and not plots.save_png(path):
        dialogs.show_error(window, "Cannot save plots", f"{path}: cannot be written")
    elif path:
        window.statusBar().showMessage(f"Plots saved to {path}", 8000)


def save_metrics(window, metrics) -> None:
    """Asks where, then writes the run's metrics CSV and its epoch history beside it."""
    if metrics is None:
        return
    path = get_csv_path(window, _suggested(window, "training_metrics.csv"))
    if not path:
        return
    try:
        written = metrics.write_csv(path)
    except UserError as exc:
        dialogs.show_error(window, "Cannot save metrics", str(exc))
        return
    window.statusBar().showMessage("Metrics saved to " + " and ".join(str(p) for p in written),
                                   8000)
