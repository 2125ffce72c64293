"""Training inside the main window: the dock, the background thread, the lock and the undo.

`install_training(window)` adds a "Training" dock (hidden until asked for), a Training
menu and a toolbar button, and returns the `TrainingSession` that drives a run:

- data previews (`read_preview`) and runs (`worker.train`) are tasks on the session's
  own `TaskHost`; their handlers here run on the GUI thread (a preview replaced by a
  newer one is abandoned; a run's events and outcome carry its run id, so those of an
  earlier run are ignored);
- while a run is going, the document is read-only: every edit goes through
  `Editor.run` (the undo stack's single entry point), which the session guards with a
  status-bar message; undo/redo, save, opening another model and export wait too;
- closing the window (or opening/closing a model) during a run asks first, then stops
  the run and waits for it (the thread stops when the window shuts down);
- after a run, the trained weights stay in the document and the run is one entry on the
  undo stack: undo writes back the values from before the run, redo the trained ones
  (numpy copies of the weights that changed).

The session plugs into the window through its public extension points: an edit guard on
`editor` (`Editor.add_guard`) and an entry in `background_tasks` (`BackgroundTask`: asked
before the document is replaced or saved, stopped at shutdown), plus `actions`, `model`,
`tree` and `statusBar()`; `main_window.py` only needs the one call.
"""

from __future__ import annotations

from functools import partial

from PySide6.QtCore import QObject, Qt, Signal, Slot
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QApplication, QDockWidget, QLabel, QMenu, QStyle

from freezestudio.core.errors import UserError
from freezestudio.core.training.config import (
    CANCELLED,
    COMPLETED,
    EpochReport,
    RunInfo,
    StageReport,
    StepReport,
    TrainingControl,
)
from freezestudio.core.training.preview import Preview, read_preview
from freezestudio.gui.background.tasks import BackgroundTask
from freezestudio.gui.background.threads import TaskHost, TaskState
from freezestudio.gui.common import dialogs
from freezestudio.gui.training import support
from freezestudio.gui.training.preset_dialog import open_preset_dialog
from freezestudio.gui.training.support import PanelState
from freezestudio.gui.training.worker import TrainRequest, train

READ_ONLY_MESSAGE = "Training is running: the model is read-only until the run ends"
STOP_TIMEOUT_S = 120


class TrainingSession(QObject, BackgroundTask):
    """Runs training for a `MainWindow` (see the module docstring).

    Signals:
        preview_shown(object): a data preview was shown (the `Preview`).
        run_done(object): a run's outcome was applied (the `RunOutcome`).

    Attributes:
        runner: the `TaskHost` of previews and runs.
        run_task: the `TaskState` of the latest run (kept after it ended; its `result`
            is the `RunOutcome`).
    """

    preview_shown = Signal(object)
    run_done = Signal(object)

    def __init__(self, window):
        super().__init__(window)
        self.window = window
        self.panel = None  # created when the dock first shows (pyqtgraph costs ~0.3 s)
        self.dock = QDockWidget("Training", window)
        self.dock.setObjectName("training_dock")
        self.dock.setWidget(QLabel())
        self.dock.setAllowedAreas(Qt.DockWidgetArea.BottomDockWidgetArea
                                  | Qt.DockWidgetArea.TopDockWidgetArea)
        window.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, self.dock)
        self.dock.hide()
        window.restoreDockWidget(self.dock)
        self.document = None
        self.preview = None
        self.control: TrainingControl | None = None
        self.run_task: TaskState | None = None
        self._preview_task: TaskState | None = None
        self._run_id = 0
        self._handled = 0
        self.runner = TaskHost("freezestudio-training", self)
        self.start_action = QAction("&Start Training", window)
        self.start_action.triggered.connect(self.start)
        self.stop_action = QAction("St&op Training", window)
        self.stop_action.triggered.connect(self.stop)
        self.stop_action.setEnabled(False)
        self.dock.visibilityChanged.connect(self._on_dock_visible)
        self._hook_window()
        self._on_document_changed()

    # --- wiring -------------------------------------------------------------------------
    @Slot(bool)
    def _on_dock_visible(self, visible: bool) -> None:
        if visible:
            self.ensure_panel()

    def ensure_panel(self):
        """The panel, created on first use (it imports pyqtgraph: not at start-up)."""
        if self.panel is None:
            from freezestudio.gui.training.panel import TrainingPanel

            self.panel = TrainingPanel()
            self.dock.setWidget(self.panel)
            self._connect_panel()
            self._show_document()
        return self.panel

    def _connect_panel(self) -> None:
        panel = self.panel
        panel.start_requested.connect(self.start)
        panel.stop_requested.connect(self.stop)
        panel.pause_requested.connect(self.set_paused)
        panel.data_changed.connect(self.request_preview)
        panel.save_plots_requested.connect(self.save_plots)
        panel.save_metrics_requested.connect(self.save_metrics)
        from freezestudio.gui.training.schedule_table import ScheduleTable

        w = self.window
        table = ScheduleTable(w.editor, w.tree.selected_nodes)
        panel.add_schedule(table)
        w.model.refreshed.connect(table.refresh)
        table.failed.connect(self._refuse)

    def _hook_window(self) -> None:
        w = self.window
        w.model.modelReset.connect(self._on_document_changed)
        w.tree.selectionModel().selectionChanged.connect(self._on_selection)
        w.editor.add_guard(self._allows_edits)
        w.background_tasks.append(self)

    def _allows_edits(self) -> bool:
        if self.is_running():
            self._refuse()
            return False
        return True

    # --- BackgroundTask ----------------------------------------------------------------------
    def may_replace_document(self) -> bool:
        if self.is_running():
            if not support.ask_stop_training(self.window):
                return False
            self.stop_and_wait()
        return True

    def may_save(self) -> bool:
        if self.is_running():
            self._refuse("Saving waits until the training run ends")
            return False
        return True

    def _refuse(self, message: str = READ_ONLY_MESSAGE) -> None:
        self.window.statusBar().showMessage(message, 5000)

    # --- document and data ------------------------------------------------------------------
    @Slot()
    def _on_document_changed(self) -> None:
        document = self.window.loaded_document
        if document is self.document:
            return
        self.document = document
        self.preview = None
        if self.panel is not None:
            self._show_document()

    def _show_document(self) -> None:
        document = self.document
        self.panel.data_box.set_document(document)
        self.panel.setEnabled(document is not None)
        self.panel.set_can_start(False)
        self.panel.clear_run([n.path for n in document.root.walk() if n.weights]
                             if document is not None else [])
        self.request_preview()

    @Slot()
    def request_preview(self) -> None:
        """Reads the chosen data in the background and checks them against the model
        (an earlier request still pending is abandoned)."""
        if self.panel is None:
            return
        if self._preview_task is not None:
            self._preview_task.abandon()
            self._preview_task = None
        spec = self.panel.data_box.spec()
        self.preview = None
        self.panel.set_can_start(False)
        if self.document is None or spec is None:
            return
        self.panel.data_box.show_message("Reading the data…")
        document = self.document
        self._preview_task = self.runner.submit(
            lambda state: read_preview(document, spec), on_done=self._on_preview,
            on_error=partial(self._on_preview_failed, spec))

    def _on_preview_failed(self, spec, task: TaskState) -> None:
        self._on_preview(Preview(spec, error=f"{type(task.error).__name__}: {task.error}"))

    def _on_preview(self, preview) -> None:
        self._preview_task = None
        self.preview = preview
        self.panel.data_box.show_preview(preview)
        self.panel.form.set_auto_loss(", ".join(name for name, _ in preview.losses),
                                      "; ".join(reason for _, reason in preview.losses))
        if preview.devices:
            self.panel.form.set_devices(preview.devices)
        self.panel.set_can_start(not preview.error and self.document is not None)
        self.preview_shown.emit(preview)

    # --- a run --------------------------------------------------------------------------------
    def is_running(self) -> bool:
        return self.panel is not None and self.panel.state != PanelState.IDLE

    @Slot()
    def start(self) -> bool:
        """Starts a run with the panel's data and settings. Returns False if refused (the
        reason is shown)."""
        if self.is_running() or self.document is None:
            return False
        if self.panel is None:
            self.dock.show()  # creates the panel and reads the data first
            return False
        spec = self.panel.data_box.spec()
        if spec is None:
            dialogs.show_error(self.window, "Cannot train", "Choose training data first.")
            return False
        try:
            config = self.panel.form.config()
        except UserError as exc:
            dialogs.show_error(self.window, "Cannot train", str(exc))
            return False
        data = None
        if self.preview is not None and self.preview.spec == spec:
            if self.preview.error:
                dialogs.show_error(self.window, "Cannot train on these data",
                                   self.preview.error)
                return False
            data = self.preview.data
        self.dock.show()
        self._run_id += 1
        self.control = TrainingControl()
        request = TrainRequest(self.document, spec, config, self.control, data, self._run_id)
        self._lock(True)
        self._keeping_focus(partial(self.panel.set_state, PanelState.PREPARING))
        self.run_task = self.runner.submit(partial(train, request), on_done=self._apply,
                                           on_partial=partial(self._on_run_event, self._run_id))
        self.window.statusBar().showMessage("Training started", 3000)
        return True

    @Slot(bool)
    def set_paused(self, paused: bool) -> None:
        running = (PanelState.RUNNING, PanelState.PAUSED)
        if self.control is None or self.panel.state not in running:
            return
        if paused:
            self.control.pause()
            self.panel.set_state(PanelState.PAUSED)
        else:
            self.control.resume()
            self.panel.set_state(PanelState.RUNNING)

    @Slot()
    def stop(self) -> None:
        """Asks the run to stop (within one step); the outcome arrives as usual."""
        if self.run_task is not None and self.is_running():
            self.run_task.cancel()
            self._keeping_focus(partial(self.panel.set_state, PanelState.STOPPING))

    def stop_and_wait(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """Stops the run and blocks until its task has ended, then applies the outcome
        (so the trained weights are on the undo stack before anything else)."""
        if not self.is_running():
            return
        self.stop()
        if self.run_task.wait(timeout_s):
            self._apply(self.run_task.result)

    def _on_run_event(self, run_id: int, event) -> None:
        if run_id != self._run_id:
            return
        if isinstance(event, StepReport):
            self.panel.step_finished(event)
        elif isinstance(event, EpochReport):
            self.panel.epoch_finished(event)
        elif isinstance(event, StageReport):
            self.panel.stage_started(event)
        elif isinstance(event, RunInfo) and self.panel.state == PanelState.PREPARING:
            self.panel.run_started(event)
            self.panel.set_state(PanelState.RUNNING)
            self.panel.highlight(support.layer_paths_of(self.window.tree.selected_nodes()))

    def _apply(self, outcome) -> None:
        if outcome.run_id != self._run_id or self._handled == outcome.run_id:
            return
        self._handled = outcome.run_id
        self._lock(False)
        result = outcome.result
        if result is not None:
            result.weights_before = None  # the undo command keeps what it needs
        if outcome.before and self.window.document is self.document:
            steps = result.steps if result is not None else 0
            text = f"Training run ({steps} steps" + \
                (f", {result.status})" if result.status != COMPLETED else ")")
            self.window.editor.stack.push(support.TrainingRunCommand(
                self.document, text, outcome.before, outcome.after, self._weights_changed))
            self._weights_changed()
        lines, ok = support.outcome_lines(outcome)
        self._keeping_focus(partial(self.panel.run_ended, lines, ok))
        self.window.statusBar().showMessage("Training " + lines[0], 10000)
        self._report(outcome)
        self.control = None
        self.run_done.emit(outcome)

    def _report(self, outcome) -> None:
        result = outcome.result
        if result is None:
            if outcome.error and not outcome.error.startswith("cancelled"):
                dialogs.show_error(self.window, "Cannot train", outcome.error, outcome.details)
            return
        if result.status not in (COMPLETED, CANCELLED):
            dialogs.show_error(self.window, "Training stopped", result.message, result.details)
        elif result.integrity is not None and not result.integrity.ok:
            dialogs.show_error(self.window, "Integrity violation",
                               "\n".join(result.integrity.summary_lines()))

    def _weights_changed(self) -> None:
        if self.document is not None:
            self.document.weights_changed()  # the details pane's weight statistics

    def _keeping_focus(self, change) -> None:
        """Runs `change()` (which disables buttons) and keeps the keyboard focus where it
        was; if that widget can no longer have it (the Start or Stop button just clicked),
        on the tree. Otherwise Qt hands it to the next widget in the chain, the filter box,
        where Ctrl+Z undoes typing instead of the run and keys go into the filter."""
        before = QApplication.focusWidget()
        change()
        target = before if before is not None and before.isEnabled() and \
            before.isVisible() and before.focusPolicy() != Qt.FocusPolicy.NoFocus \
            else self.window.tree
        if QApplication.focusWidget() is not target and self.window.isActiveWindow():
            target.setFocus(Qt.FocusReason.OtherFocusReason)

    def _lock(self, locked: bool) -> None:
        """Undo/redo wait for the run (edits are refused by the guarded `Editor.run`)."""
        actions = self.window.actions
        stack = self.window.editor.stack
        actions.undo.setEnabled(not locked and stack.canUndo())
        actions.redo.setEnabled(not locked and stack.canRedo())
        self.start_action.setEnabled(not locked)
        self.stop_action.setEnabled(locked)

    # --- selection, exports -------------------------------------------------------------------
    @Slot()
    def _on_selection(self, *_args) -> None:
        if self.panel is not None:
            self.panel.highlight(support.layer_paths_of(self.window.tree.selected_nodes()))

    @Slot()
    def save_plots(self) -> None:
        support.save_plots(self.window, self.panel.plots)

    @Slot()
    def save_metrics(self) -> None:
        support.save_metrics(self.window, self.panel.plots.metrics)

    # --- shutdown -----------------------------------------------------------------------------
    def request_shutdown(self) -> None:
        self.runner.shutdown(timeout_s=0)

    def shutdown(self) -> None:
        """Stops a run (without asking) and the background thread; waits for both."""
        self.runner.shutdown(STOP_TIMEOUT_S)


def install_training(window) -> TrainingSession:
    """Adds the training dock, a Training menu (with the fine-tuning presets dialog) and a
    toolbar button to a `MainWindow`.

    Returns:
        The session (keep it on the window, e.g. `window.training`).
    """
    session = TrainingSession(window)
    toggle = session.dock.toggleViewAction()
    toggle.setText("&Training Panel")
    toggle.setIconText("Train")
    toggle.setIcon(window.style().standardIcon(QStyle.StandardPixmap.SP_MediaPlay))
    toggle.setToolTip("Show the training panel: fine-tune with live loss and gradient plots")
    toggle.setShortcut(QKeySequence("Ctrl+T"))
    menu = QMenu("&Training", window)
    menu.setObjectName("training_menu")
    window.menuBar().insertMenu(window.actions.help_menu.menuAction(), menu)
    menu.addAction(toggle)
    menu.addSeparator()
    menu.addAction(session.start_action)
    menu.addAction(session.stop_action)
    menu.addSeparator()
    session.preset_action = menu.addAction("Fine-Tuning &Preset\u2026")
    session.preset_action.triggered.connect(lambda: open_preset_dialog(window.editor, window))
    window.actions.toolbar.addSeparator()
    window.actions.toolbar.addAction(toggle)
    session.menu = menu
    return session
