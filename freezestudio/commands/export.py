"""`freezestudio export FILE --format F -o OUT`: export for deployment, verified.

With `--json`, stdout holds only one JSON object (`ExportReport.to_json`,
docs/architecture.md, JSON output); a progress bar for the calibration pass goes to stderr
when it is a terminal.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile

from freezestudio.commands.common import (
    add_edit_options,
    add_merge_lora_option,
    add_model_options,
    open_edited_document,
)
from freezestudio.commands.exit_codes import ExitCode
from freezestudio.core.export.options import (
    DEFAULT_CALIBRATION_SAMPLES,
    DEFAULT_TOLERANCE,
    DEFAULT_VERIFICATION_SAMPLES,
    FORMATS,
    MIN_AGREEMENT,
    IOType,
    Quantization,
)

HELP = ("export as .keras/.h5, SavedModel, TFLite, ONNX or a frozen graph, verified against "
        "the model")


def configure(parser) -> None:
    add_model_options(parser)
    add_edit_options(parser)
    parser.add_argument("--format", required=True, choices=FORMATS,
                        help="what to write (savedmodel writes a folder)")
    parser.add_argument("-o", "--output", required=True, metavar="OUT",
                        help="the file (or SavedModel folder) to write")
    parser.add_argument("--quantize", nargs="?", const=Quantization.DYNAMIC.value,
                        choices=[m.value for m in Quantization], metavar="MODE",
                        help="post-training quantisation: tflite dynamic|float16|int8, onnx "
                             "dynamic (a bare --quantize means dynamic)")
    parser.add_argument("--calibration-data", metavar="DATA",
                        help="int8: representative samples (any data train --data accepts, "
                             "or inputs only: an .npz without y, an .npy, a folder of "
                             f"images; up to {DEFAULT_CALIBRATION_SAMPLES} of its training "
                             "rows)")
    parser.add_argument("--io-type", default=IOType.FLOAT32.value,
                        choices=[m.value for m in IOType],
                        help="int8: float32 I/O around integer internals (default, runs "
                             "everywhere) or int8 I/O (integer-only accelerators)")
    parser.add_argument("--verify-data", metavar="DATA",
                        help="verify on these samples (held-out rows when the data have "
                             f"them, up to {DEFAULT_VERIFICATION_SAMPLES}) instead of random "
                             "inputs; reports top-1 agreement, and accuracy when the data "
                             "have labels (inputs alone work too)")
    floors = ", ".join(f"{mode} {floor:g}" for mode, floor in MIN_AGREEMENT.items())
    parser.add_argument("--min-agreement", type=float, metavar="F",
                        help="quantised exports with --verify-data: the least top-1 "
                             f"agreement with the model (default per mode: {floors})")
    parser.add_argument("--layer-report", action="store_true",
                        help="tflite int8: also report each quantised op's own error (RMSE, "
                             "in int8 steps), worst first; slower (calibrates again)")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object (the report) as the last stdout line")
    parser.add_argument("--opset", type=int, metavar="N", help="onnx: the opset version")
    parser.add_argument("--portable", action="store_true",
                        help="keras/h5: drop stop-gradient layers so plain Keras loads the file")
    add_merge_lora_option(parser)
    parser.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE, metavar="X",
                        help="largest accepted difference from the model, times "
                             "max(1, largest |output|) (default "
                             f"{DEFAULT_TOLERANCE:g})")
    parser.add_argument("--no-verify", action="store_true",
                        help="do not load the export back and compare it with the model")


@contextlib.contextmanager
def _native_stderr_muted():
    """TensorFlow's converters log to fd 2 from C++; the user should see our lines only."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)


def run(args) -> int:
    from freezestudio.core.export import (
        ExportOptions,
        VerificationError,
        check_request,
        export_document,
    )
    from freezestudio.core.export.samples import read_samples

    options = ExportOptions(quantize=args.quantize, opset=args.opset, portable=args.portable,
                            merge_lora=args.merge_lora, verify=not args.no_verify,
                            tolerance=args.tolerance,
                            io_type=args.io_type, min_agreement=args.min_agreement,
                            layer_report=args.layer_report)
    options.calibration = args.calibration_data  # checked as given; read after the model
    if args.verify_data and args.no_verify:
        from freezestudio.core.errors import UserError

        raise UserError("--verify-data and --no-verify contradict each other")
    check_request(args.format, args.output, options)  # before the model loads
    document = open_edited_document(args)
    if args.calibration_data:
        options.calibration = read_samples(document, args.calibration_data,
                                           limit=DEFAULT_CALIBRATION_SAMPLES, held_out=False,
                                           model_path=args.file)
    if args.verify_data:
        options.verification = read_samples(document, args.verify_data,
                                            limit=DEFAULT_VERIFICATION_SAMPLES, held_out=True,
                                            model_path=args.file)
    bar = _Bar() if sys.stderr.isatty() else None
    try:
        with _native_stderr_muted():
            report = export_document(document, args.format, args.output, options, bar)
    except VerificationError as exc:
        if args.json:
            print(json.dumps(exc.report.to_json()))
        else:
            for check in exc.report.checks:
                print(f"  {check.line()}")
        raise
    finally:
        if bar is not None:
            bar.close()
    if args.json:
        print(json.dumps(report.to_json()))
    else:
        for line in report.lines():
            print(line)
    return ExitCode.OK


class _Bar:
    """One updating stderr line for the export's progress (a terminal only). Writes
    through a duplicate of fd 2 taken before the converters' output is muted."""

    def __init__(self):
        self._out = os.fdopen(os.dup(2), "w")

    def __call__(self, fraction: float, message: str) -> None:
        filled = int(fraction * 24)
        self._out.write(f"\r[{'#' * filled}{'.' * (24 - filled)}] {message[:60]:<60}")
        self._out.flush()

    def close(self) -> None:
        self._out.write("\r" + " " * 88 + "\r")
        self._out.close()
