"""`freezestudio export FILE --format F -o OUT`: export for deployment, verified."""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile

from freezestudio.commands.common import add_edit_options, add_model_options, open_edited_document
from freezestudio.commands.exit_codes import ExitCode
from freezestudio.core.export.options import DEFAULT_TOLERANCE, FORMATS

HELP = ("export as .keras/.h5, SavedModel, TFLite, ONNX or a frozen graph, verified against "
        "the model")


def configure(parser) -> None:
    add_model_options(parser)
    add_edit_options(parser)
    parser.add_argument("--format", required=True, choices=FORMATS,
                        help="what to write (savedmodel writes a folder)")
    parser.add_argument("-o", "--output", required=True, metavar="OUT",
                        help="the file (or SavedModel folder) to write")
    parser.add_argument("--quantize", action="store_true",
                        help="tflite: dynamic-range quantisation (int8 weights)")
    parser.add_argument("--opset", type=int, metavar="N", help="onnx: the opset version")
    parser.add_argument("--portable", action="store_true",
                        help="keras/h5: drop stop-gradient layers so plain Keras loads the file")
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

    options = ExportOptions(quantize=args.quantize, opset=args.opset, portable=args.portable,
                            verify=not args.no_verify, tolerance=args.tolerance)
    check_request(args.format, args.output, options)  # before the model loads
    document = open_edited_document(args)
    try:
        with _native_stderr_muted():
            report = export_document(document, args.format, args.output, options)
    except VerificationError as exc:
        for check in exc.report.checks:
            print(f"  {check.line()}")
        raise
    for line in report.lines():
        print(line)
    return ExitCode.OK
