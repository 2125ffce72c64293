"""The training panel: data and settings, Start / Pause / Stop, progress, plots, result.

A view: it shows what it is told and emits what the user asks for. The
`training_session.TrainingSession` runs the worker, locks the document and applies the
result. Progress text (epoch/step, steps/s, ETA) is refreshed with the plots' redraws, at
most 20 times a second, not once per step.
"""

from __future__ import annotations

import math

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtGui import QTextCursor
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QSplitter,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from freezestudio.gui.plots.training_plots import TrainingPlots
from freezestudio.gui.training.form import ConfigForm, DataSourceBox
from freezestudio.gui.training.support import PanelState


def format_eta(seconds: float) -> str:
    if not math.isfinite(seconds) or seconds < 0:
        return "?"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else \
        f"{rest // 60}:{rest % 60:02d}"


class TrainingPanel(QWidget):
    """The dock's content.

    Signals:
        start_requested(), stop_requested(), pause_requested(bool): the buttons (True:
            pause, False: resume).
        data_changed(): the data source or its split changed (read a new preview).
        save_plots_requested(), save_metrics_requested(): the export buttons.
    """

    start_requested = Signal()
    stop_requested = Signal()
    pause_requested = Signal(bool)
    data_changed = Signal()
    save_plots_requested = Signal()
    save_metrics_requested = Signal()

    def __init__(self, parent=None):
        super().__init__(parent)
        self.state = PanelState.IDLE
        self.info = None
        self.last_step = None
        self.data_box = DataSourceBox()
        self.form = ConfigForm()
        self.data_box.seed_source = self.form.seed_value
        self.result = QPlainTextEdit()
        self.result.setReadOnly(True)
        self.result.setPlaceholderText("The run's summary and integrity report appear here.")
        self.tabs = QTabWidget()
        self.tabs.addTab(self.data_box, "Data")
        self.tabs.addTab(self.form, "Settings")
        self.tabs.addTab(self.result, "Result")
        self.tabs.setMinimumWidth(340)
        self.plots = TrainingPlots()
        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(self.tabs)
        splitter.addWidget(self.plots)
        splitter.setStretchFactor(0, 0)
        splitter.setStretchFactor(1, 1)
        splitter.setSizes([360, 1000])
        splitter.setChildrenCollapsible(False)
        self.splitter = splitter
        self.start_button = QPushButton("Start")
        self.start_button.setToolTip("Train the model as edited (the tree is read-only while "
                                     "it trains)")
        self.pause_button = QPushButton("Pause")
        self.pause_button.setCheckable(True)
        self.stop_button = QPushButton("Stop")
        self.progress = QProgressBar()
        self.progress.setTextVisible(True)
        self.progress.setFormat("")
        self.progress.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.rate = QLabel("")
        self.rate.setMinimumWidth(260)
        self.save_plots = QPushButton("Save Plots…")
        self.save_plots.setToolTip("Save the three plots as one PNG image")
        self.save_metrics = QPushButton("Save Metrics…")
        self.save_metrics.setToolTip("Per-step loss and gradient norms as CSV (and the "
                                     "per-epoch history beside it)")
        controls = QHBoxLayout()
        for widget in (self.start_button, self.pause_button, self.stop_button):
            controls.addWidget(widget)
        controls.addWidget(self.progress, 1)
        controls.addWidget(self.rate)
        controls.addWidget(self.save_plots)
        controls.addWidget(self.save_metrics)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 2, 4, 4)
        layout.setSpacing(3)
        layout.addWidget(splitter, 1)
        layout.addLayout(controls)
        self.start_button.clicked.connect(self.start_requested)
        self.stop_button.clicked.connect(self.stop_requested)
        self.pause_button.toggled.connect(self.pause_requested)
        self.save_plots.clicked.connect(self.save_plots_requested)
        self.save_metrics.clicked.connect(self.save_metrics_requested)
        self.data_box.changed.connect(self.data_changed)
        self.plots.redrawn.connect(self._refresh_progress)
        self.can_start = False
        self.set_state(PanelState.IDLE)

    # --- state ------------------------------------------------------------------------
    def set_state(self, state: PanelState) -> None:
        self.state = state
        busy = state != PanelState.IDLE
        self.start_button.setEnabled(not busy and self.can_start)
        self.pause_button.setEnabled(state in (PanelState.RUNNING, PanelState.PAUSED))
        self.stop_button.setEnabled(state in (PanelState.PREPARING, PanelState.RUNNING,
                                              PanelState.PAUSED))
        for widget in (self.data_box, self.form):
            widget.setEnabled(not busy)
        has_run = self.plots.metrics is not None and self.plots.metrics.count > 0
        self.save_plots.setEnabled(has_run)
        self.save_metrics.setEnabled(has_run and not busy)
        self.pause_button.blockSignals(True)
        self.pause_button.setChecked(state == PanelState.PAUSED)
        self.pause_button.setText("Resume" if state == PanelState.PAUSED else "Pause")
        self.pause_button.blockSignals(False)
        if state == PanelState.PREPARING:
            self.progress.setRange(0, 0)  # busy indicator until the first step
            self.progress.setFormat("")
            self.rate.setText("preparing (data, model, first step)…")
        elif state == PanelState.PAUSED:
            self.rate.setText("paused")
        elif state == PanelState.STOPPING:
            self.rate.setText("stopping…")

    def set_can_start(self, ok: bool) -> None:
        """Whether Start is possible now (a document and data that fit it)."""
        self.can_start = ok
        self.start_button.setEnabled(ok and self.state == PanelState.IDLE)

    # --- a run --------------------------------------------------------------------------
    def run_started(self, info) -> None:
        self.info = info
        self.last_step = None
        self.plots.start_run(info)
        self.progress.setRange(0, max(info.total_steps, 1))
        self.progress.setValue(0)
        self.progress.setFormat(f"epoch 1/{info.epochs} · step 0/{info.total_steps}")
        self.rate.setText("first step…")
        self.result.setPlainText(run_header(info))

    def stage_started(self, report) -> None:
        """A schedule stage starts: a line in the plots and the log; its layers join the
        gradient plots' choice."""
        if self.info is not None:
            step = (report.epoch - 1) * self.info.steps_per_epoch
            self.plots.mark_stage(step, f"epoch {report.epoch}")
            known = set(self.info.receiving_layers)
            self.info.receiving_layers += [p for p in report.receiving_layers if p not in known]
        self.result.appendPlainText(report.description)

    def add_schedule(self, table) -> None:
        """Shows the Schedule table (`schedule_table.ScheduleTable`) as a tab."""
        self.schedule = table
        self.tabs.insertTab(2, table, "Schedule")

    def step_finished(self, report) -> None:
        self.last_step = report
        self.plots.add_step(report)

    def epoch_finished(self, report) -> None:
        self.plots.add_epoch(report)
        parts = [f"loss {report.loss:.4f}"] + [f"{k} {v:.4f}" for k, v in report.metrics.items()]
        if report.val_loss is not None:
            parts += [f"val_loss {report.val_loss:.4f}"] + \
                [f"val_{k} {v:.4f}" for k, v in report.val_metrics.items()]
        epochs = self.info.epochs if self.info else "?"
        self.result.appendPlainText(f"epoch {report.epoch}/{epochs}: {'  '.join(parts)} "
                                    f"({report.seconds:.1f} s)")

    @Slot()
    def _refresh_progress(self) -> None:
        report, info = self.last_step, self.info
        if report is None or info is None:
            return
        self.progress.setValue(report.step)
        self.progress.setFormat(f"epoch {report.epoch}/{info.epochs} · step {report.step}/"
                                f"{info.total_steps}")
        if self.state == PanelState.RUNNING:
            self.rate.setText(f"{report.steps_per_second:.1f} steps/s · ETA "
                              f"{format_eta(report.eta_seconds)} · loss {report.loss:.4f}")

    def run_ended(self, lines: list, ok: bool) -> None:
        """Shows the outcome (summary, integrity report) and goes back to idle."""
        self.plots.finish_run()
        self._refresh_progress()
        if self.progress.maximum() == 0:
            self.progress.setRange(0, 1)
            self.progress.setValue(0)
        log = self.result.toPlainText()  # the run's header and epoch lines
        self.result.setPlainText("\n".join(lines) + ("\n\n" + log if log else ""))
        self.result.moveCursor(QTextCursor.MoveOperation.Start)  # the outcome first
        self.rate.setText(lines[0] if lines else "")
        self.rate.setToolTip("\n".join(lines))
        self.tabs.setCurrentWidget(self.result)
        self.set_state(PanelState.IDLE)
        self.rate.setStyleSheet("" if ok else "color: #c0392b")

    def clear_run(self, layers: list) -> None:
        """Forgets the last run (another document, or none): empty plots (the heatmap's
        rows labelled with `layers`), no progress, summary or outcome, the Data tab."""
        self.plots.show_idle(layers)
        self.info = None
        self.last_step = None
        self.result.clear()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setFormat("")
        self.rate.setText("")
        self.rate.setToolTip("")
        self.rate.setStyleSheet("")
        self.tabs.setCurrentWidget(self.data_box)
        self.set_state(PanelState.IDLE)  # Save Plots / Save Metrics: nothing to save

    def highlight(self, paths: list) -> None:
        self.plots.highlight(paths)


def run_header(info) -> str:
    lines = [f"data: {info.data}"] + [f"loss: {loss}" for loss in info.losses]
    lines += [f"optimizer: {info.optimizer}; device: {info.device}",
              f"feature cache: {info.feature_cache}",
              f"gradient reaches {len(info.receiving_layers)} of {len(info.layer_paths)} layers "
              f"with weights; {info.total_steps} steps ({info.epochs} x {info.steps_per_epoch})"]
    lines += [f"note: {note}" for note in info.notes]
    return "\n".join(lines)
