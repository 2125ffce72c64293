"""An export as a background task: the request, the task function, the outcome.

`run_export(request, state)` runs the core's `export_document` on the export feature's
`TaskHost` thread: its progress callback is `state.progress` and it polls the task's
cancel flag between steps. It returns an `ExportOutcome` whatever happens (a refusal, a
failed verification, a cancel or an unexpected failure is described, never raised).
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass

from freezestudio.core.errors import UserError, first_line
from freezestudio.gui.background.threads import TaskState


@dataclass
class ExportRequest:
    """One export to do: the document, the format, the destination and the options.

    `calibration` and `verification` name data sources (anything `train --data` takes),
    read by the task into the options' samples."""

    document: object
    fmt: str
    out: str
    options: object
    calibration: str | None = None
    verification: str | None = None


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

    report: object = None
    error: str = ""
    install: str = ""
    cancelled: bool = False
    details: str = ""

    @property
    def ok(self) -> bool:
        return not self.error and not self.cancelled and self.report is not None


def run_export(request: ExportRequest, state: TaskState) -> ExportOutcome:
    """The task of one export (for `TaskHost.submit`, with the request bound).

    Args:
        request: what to export, where.
        state: the task's state; cancelling it stops the export after its current step.

    Returns:
        The outcome: never raises.
    """
    from freezestudio.core.export import (
        ExportCancelled,
        MissingDependencyError,
        VerificationError,
        export_document,
    )

    outcome = ExportOutcome()
    try:
        options = _with_samples(request, state)
        outcome.report = export_document(request.document, request.fmt, request.out,
                                         options, progress=state.progress,
                                         cancelled=lambda: state.cancelled)
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
        outcome.error = f"unexpected failure: {type(exc).__name__}: {first_line(exc, default='')}"
        outcome.details = traceback.format_exc()
    return outcome


def _with_samples(request: ExportRequest, state: TaskState):
    """The request's options with its named data read into samples."""
    import dataclasses

    from freezestudio.core.export.options import (
        DEFAULT_CALIBRATION_SAMPLES,
        DEFAULT_VERIFICATION_SAMPLES,
    )
    from freezestudio.core.export.samples import read_samples

    options = request.options
    path = request.document.source_path
    if request.calibration:
        state.progress(0.0, f"reading the calibration data ({request.calibration})")
        options = dataclasses.replace(options, calibration=read_samples(
            request.document, request.calibration, limit=DEFAULT_CALIBRATION_SAMPLES,
            held_out=False, model_path=path))
    if request.verification:
        state.progress(0.01, f"reading the verification data ({request.verification})")
        options = dataclasses.replace(options, verification=read_samples(
            request.document, request.verification, limit=DEFAULT_VERIFICATION_SAMPLES,
            held_out=True, model_path=path))
    return options
