"""The export pipeline: check the request, write, verify, commit (re-exported by the package).

One entry point, `export_document`, for the CLI and for a GUI worker thread: it takes the
options and an optional progress callback and cancel flag, never prints, and returns an
`ExportReport` (or raises `UserError` with a one-line message). Formats (docs/architecture.md):

- `keras`, `h5`: the editable model, flags and stop-gradient points kept;
- `savedmodel`: `serving_default` keyed by the model's input and output names;
- `tflite`: float32 or quantised (dynamic, float16, full-integer int8 calibrated on the
  user's samples), built-in ops only, verified with LiteRT's interpreter;
- `onnx`: tf2onnx from the serving function, configurable opset, optionally dynamic int8
  (onnxruntime.quantization);
- `frozen-graph`: one `.pb` with the variables folded into constants + `.io.txt`.

The deployment formats are made from the model without its stop-gradient layers (identity
at inference). Every export is written under a temporary name, loaded back with its own
runtime, compared with the model (on random inputs, or on the user's samples: then
quantised exports are judged by their top-1 agreement), and only then renamed into place.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from freezestudio.core.errors import UserError
from freezestudio.core.export.destination import SUFFIXES, check_destination, commit
from freezestudio.core.export.options import (
    DEPLOYMENT_FORMATS,
    EDITABLE_FORMATS,
    FORMATS,
    QUANTIZATIONS,
    ExportFormat,
    ExportOptions,
    IOType,
    Progress,
    Quantization,
)
from freezestudio.core.export.report import (
    ExportCancelled,
    ExportReport,
    VerificationError,
    Written,
)
from freezestudio.core.files import formats


def available_formats(document) -> list[str]:
    """The formats this document can be exported to (generic SavedModels have no Keras
    layers, so no `.keras`/`.h5`)."""
    if document.source_format == formats.SAVEDMODEL:
        return list(DEPLOYMENT_FORMATS)
    return list(FORMATS)


def default_suffix(fmt: str) -> str:
    """The usual file name ending for a format ("" for a SavedModel folder)."""
    return (SUFFIXES[fmt] or ("",))[0]


def export_document(document, fmt: str, out, options: ExportOptions | None = None,
                    progress: Progress | None = None,
                    cancelled: Callable[[], bool] | None = None) -> ExportReport:
    """Exports the document and verifies the result.

    Args:
        document: the edited model.
        fmt: one of `FORMATS`.
        out: the destination file (a folder for `savedmodel`).
        options: see `ExportOptions`.
        progress: called as `progress(fraction, message)` between steps (from the calling
            thread: a GUI worker forwards it as a signal).
        cancelled: polled between steps; when it returns True the export stops.

    Returns:
        What was written and the verification's per-output differences.

    Raises:
        UserError: bad options or destination, a model the format cannot hold, a missing
            optional dependency (`MissingDependencyError`), or a failed verification
            (`VerificationError`). Nothing is written then.
        ExportCancelled: `cancelled()` returned True; nothing is written.
    """
    from freezestudio.core.tf_import import import_tensorflow_quietly

    options = options or ExportOptions()
    started = time.monotonic()
    step = _Steps(progress, cancelled)
    out = Path(out)
    check_request(fmt, out, options, document)
    step(0.02, "loading TensorFlow")
    import_tensorflow_quietly()
    report = ExportReport(fmt, quantization=options.quantize and str(options.quantize))
    if fmt in EDITABLE_FORMATS:
        write = _editable_writer(document, fmt, options, report, step)
    else:
        write = _deployment_writer(document, fmt, options, report, step)
    report.paths = commit(out, fmt, write)
    report.seconds = time.monotonic() - started
    step(1.0, "done")
    return report


def check_request(fmt: str, out, options: ExportOptions | None = None, document=None) -> None:
    """Checks the format, options, destination and optional dependencies, without
    exporting anything: a dialog or the CLI can call it before the slow work starts.

    Args:
        fmt: one of `FORMATS`.
        out: the destination.
        options: the options (default `ExportOptions()`).
        document: if given, also checks that this document can take the format.

    Raises:
        UserError: what is wrong, in one line (`MissingDependencyError` for a missing
            optional package).
    """
    options = options or ExportOptions()
    if fmt not in FORMATS:
        raise UserError(f"unknown export format '{fmt}' (choose from {', '.join(FORMATS)})")
    if document is not None and fmt not in available_formats(document):
        raise UserError(f"a generic SavedModel has no Keras layers to save as {fmt}: export it "
                        f"as {', '.join(DEPLOYMENT_FORMATS)}")
    if options.quantize is not None and options.quantize not in QUANTIZATIONS.get(fmt, ()):
        offered = "; ".join(f"{f}: {', '.join(modes)}" for f, modes in QUANTIZATIONS.items())
        raise UserError(f"{fmt} cannot be quantised as {options.quantize} (quantisation "
                        f"modes: {offered})")
    if options.quantize == Quantization.INT8 and options.calibration is None:
        raise UserError("int8 quantisation needs calibration data: give --calibration-data "
                        "DATA (a few hundred samples the model will see)")
    if options.calibration is not None and options.quantize != Quantization.INT8:
        raise UserError("calibration data apply to --quantize int8 only")
    if options.layer_report and (fmt != ExportFormat.TFLITE
                                 or options.quantize != Quantization.INT8):
        raise UserError("the per-layer report applies to --format tflite --quantize int8 only "
                        "(dynamic and float16 exports compute activations in float: no op's "
                        "output is rounded to compare)")
    if options.io_type != IOType.FLOAT32 and options.quantize != Quantization.INT8:
        raise UserError("an integer I/O type applies to --quantize int8 only")
    if options.min_agreement is not None and not 0 <= options.min_agreement <= 1:
        raise UserError("the minimum agreement must lie between 0 and 1")
    if options.opset is not None and fmt != ExportFormat.ONNX:
        raise UserError("an opset applies to the onnx format only")
    if options.portable and fmt not in EDITABLE_FORMATS:
        raise UserError(f"'portable' applies to keras/h5 only ({fmt} exports never contain "
                        "stop-gradient layers)")
    if not options.tolerance > 0 or options.batch_size < 1:
        raise UserError("the verification tolerance must be > 0 and the batch size >= 1")
    check_destination(Path(out), fmt)
    if fmt == ExportFormat.ONNX:
        from freezestudio.core.export.dependencies import require_onnx
        from freezestudio.core.export.onnx import check_opset

        require_onnx(runtime=options.verify)
        check_opset(options.opset)


class _Steps:
    """Reports progress and raises ExportCancelled when the cancel flag is up."""

    def __init__(self, progress, cancelled):
        self._progress, self._cancelled = progress, cancelled

    def __call__(self, fraction: float, message: str) -> None:
        if self._cancelled is not None and self._cancelled():
            raise ExportCancelled("export cancelled; nothing was written")
        if self._progress is not None:
            self._progress(fraction, message)


def _deployment_writer(document, fmt, options, report, step):
    from freezestudio.core.edits.lora import merged_adapters
    from freezestudio.core.export import verify
    from freezestudio.core.export.inference_model import deployment_model, reference_model

    step(0.05, "preparing the deployment model (stop-gradient layers dropped)")
    inference = deployment_model(document)
    feeds = expected = None
    if options.verify:
        step(0.1, "running the model on the verification inputs")
        feeds = verify.verification_inputs(inference, options)
        reference = reference_model(document)
        expected = reference.predict({r.name: feeds[i.name] for r, i in
                                      zip(reference.inputs, inference.inputs, strict=True)})
    writer = _WRITERS[fmt]

    def write(tmp: Path) -> None:
        step(0.2, f"writing {fmt}")
        with merged_adapters(document.adapters()):  # traced merged: no adapter variables
            written = writer(inference, tmp, options, step)
        report.notes += written.notes
        report.float_bytes = written.float_bytes
        report.layer_report = written.layer_report
        if options.verify:
            step(0.7, f"verifying with {verify.runtime(fmt)}")
            actual = verify.run_export(fmt, tmp, inference, feeds)
            quantized = options.quantize is not None
            real = options.verification is not None
            labels = options.verification.labels if real else None
            checks = verify.compare(inference.output_names, expected, actual,
                                    None if quantized else options.tolerance, labels,
                                    options.agreement_floor if real else None)
            _record(report, fmt, checks, feeds, options)
        step(0.95, "moving into place")

    return write


def _editable_writer(document, fmt, options, report, step):
    from freezestudio.core.export import keras_file, verify
    from freezestudio.core.export.inference_model import reference_model

    def write(tmp: Path) -> None:
        step(0.1, f"saving {fmt}")
        report.notes += keras_file.write_keras_file(document, tmp, options)
        if not options.verify:
            return
        step(0.5, "reopening the copy to verify it")
        reference = reference_model(document)
        feeds = verify.verification_inputs(reference, options)
        expected = reference.predict(feeds)
        actual, copy = keras_file.run_keras_file(tmp, feeds)
        problems = keras_file.state_differences(document, copy, options.portable,
                                                options.merge_lora)
        if problems:
            raise VerificationError(f"the {fmt} copy does not reopen as edited: "
                                    f"{'; '.join(problems)}; nothing was written", report)
        labels = options.verification.labels if options.verification is not None else None
        _record(report, fmt, verify.compare(reference.output_names, expected, actual,
                                            options.tolerance, labels), feeds, options)
        step(0.95, "moving into place")

    return write


def _record(report: ExportReport, fmt: str, checks, feeds: dict, options=None) -> None:
    from freezestudio.core.export import verify

    report.checks = checks
    report.runtime = verify.runtime(fmt)
    report.samples = len(next(iter(feeds.values()))) if feeds else 0
    real = options is not None and options.verification is not None
    report.samples_source = options.verification.source if real else "random"
    if not report.ok:
        raise VerificationError(verify.failure_message(fmt, checks), report)


def _write_savedmodel(inference, path, options, step):
    from freezestudio.core.export.savedmodel import write_savedmodel

    return Written(write_savedmodel(inference, path, options))


def _write_tflite(*args):
    from freezestudio.core.export.tflite import write_tflite

    return write_tflite(*args)


def _write_onnx(inference, path, options, step):
    from freezestudio.core.export.onnx import write_onnx

    return write_onnx(inference, path, options)


def _write_frozen_graph(inference, path, options, step):
    from freezestudio.core.export.frozen_graph import write_frozen_graph

    return Written(write_frozen_graph(inference, path, options))


_WRITERS = {
    ExportFormat.SAVEDMODEL: _write_savedmodel,
    ExportFormat.TFLITE: _write_tflite,
    ExportFormat.ONNX: _write_onnx,
    ExportFormat.FROZEN_GRAPH: _write_frozen_graph,
}
