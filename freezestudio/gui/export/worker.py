"""Exports off the GUI thread: a QObject worker on its own QThread, reporting by signals.

The worker runs the core's `export_document` with a progress callback that emits
`progress(fraction, message)` and a cancel flag the GUI sets (the core polls it between
steps). Receivers are `@Slot` methods of main-thread objects (docs/architecture.md: the PySide6
threading trap). As in `workers.py`, the thread's event loop runs inside a Python frame.
"""

from __future__ import annotations

import threading
import traceback
from dataclasses import dataclass, field

from PySide6.QtCore import QObject, QThread, Signal, Slot

from freezestudio.core.errors import UserError


@dataclass
class ExportRequest:
    document: object
    fmt: str
    out: str
    options: object
    cancel: threading.Event = field(default_factory=threading.Event)


@dataclass
class ExportOutcome:
    """How an export ended.

    Attributes:
        report: the `ExportReport` (None unless it succeeded; for a failed verification,
            the report of the checks that failed).
        error: the core's one-line message (never a traceback).
        install: for a missing optional dependency, the command that installs it.
        cancelled: the user cancelled; nothing was written.
        details: a traceback, for an unexpected failure only.
    """

    request: ExportRequest
    report: object = None
    error: str = ""
    install: str = ""
    cancelled: bool = False
    details: str = ""

    @property
    def ok(self) -> bool:
        return not self.error and not self.cancelled and self.report is not None


class ExportWorker(QObject):
    """Runs one export at a time on its thread.

    Signals:
        progress(float, str): fraction done and what is happening.
        finished(ExportOutcome): the export ended (in any way).
    """

    progress = Signal(float, str)
    finished = Signal(object)

    @Slot(object)
    def export(self, request: ExportRequest) -> None:
        from freezestudio.core.export import (
            ExportCancelled,
            MissingDependencyError,
            VerificationError,
            export_document,
        )

        outcome = ExportOutcome(request)
        try:
            outcome.report = export_document(
                request.document, request.fmt, request.out, request.options,
                progress=lambda fraction, message: self.progress.emit(fraction, message),
                cancelled=request.cancel.is_set)
        except ExportCancelled as exc:
            outcome.cancelled = True
            outcome.error = str(exc)
        except MissingDependencyError as exc:
            outcome.error, outcome.install = str(exc), exc.install
        except VerificationError as exc:
            outcome.error, outcome.report = str(exc), exc.report
        except UserError as exc:
            outcome.error = str(exc)
        except Exception as exc:  # noqa: BLE001 - shown as a dialog, never raised into Qt
            first = next((line for line in str(exc).splitlines() if line.strip()), "")
            outcome.error = f"unexpected failure: {type(exc).__name__}: {first[:300]}"
            outcome.details = traceback.format_exc()
        self.finished.emit(outcome)


class ExportThread(QThread):
    """A QThread whose event loop runs inside a Python frame (see `workers.py`)."""

    def run(self) -> None:
        self.exec()


class ExportRunner(QObject):
    """Owns the export thread for a window; one export at a time.

    Signals:
        progress(float, str), finished(ExportOutcome): from the worker, re-emitted on
            the GUI thread.
    """

    progress = Signal(float, str)
    finished = Signal(object)
    _export = Signal(object)

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self.request: ExportRequest | None = None
        self.thread = ExportThread()
        self.thread.setObjectName("freezestudio-export")
        self.worker = ExportWorker()
        self.worker.moveToThread(self.thread)
        self._export.connect(self.worker.export)
        self.worker.progress.connect(self._on_progress)
        self.worker.finished.connect(self._on_finished)
        self.thread.finished.connect(self.worker.deleteLater)
        self.thread.start()

    def busy(self) -> bool:
        return self.request is not None

    def start(self, request: ExportRequest) -> None:
        self.request = request
        self._export.emit(request)

    def cancel(self) -> None:
        if self.request is not None:
            self.request.cancel.set()

    @Slot(float, str)
    def _on_progress(self, fraction: float, message: str) -> None:
        self.progress.emit(fraction, message)

    @Slot(object)
    def _on_finished(self, outcome) -> None:
        self.request = None
        self.finished.emit(outcome)

    def shutdown(self) -> None:
        """Cancels a running export and stops the thread (waits for both)."""
        self.cancel()
        self.thread.quit()
        self.thread.wait()
