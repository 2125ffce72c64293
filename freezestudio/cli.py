"""Command line: no sub-command starts the GUI; sub-commands run headless (DESIGN.md).

Exit codes: 0 success, 2 user error (one line `freezestudio: error: ...` on stderr),
1 unexpected failure (short message; the traceback goes to a log file).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import traceback
from pathlib import Path

from freezestudio.core.errors import UserError

EXIT_OK, EXIT_FAILURE, EXIT_USER_ERROR = 0, 1, 2
SUBCOMMANDS = ("inspect", "apply")


class _Parser(argparse.ArgumentParser):
    """argparse with the project's one-line error format and exit code 2."""

    def error(self, message):
        raise UserError(message)


def _add_model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", help=".keras, .h5 or SavedModel directory")
    parser.add_argument("--trust", action="store_true",
                        help="allow Lambda layers and other objects that run code when loaded")
    parser.add_argument("--custom-objects", action="append", default=[], metavar="MODULE.py",
                        help="import this file so the custom classes it registers load")


def _add_edit_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--plan", metavar="P.json", help="apply this plan first")
    parser.add_argument("--freeze", action="append", default=[], metavar="GLOB",
                        help="freeze the layers/weights matching GLOB (repeatable)")
    parser.add_argument("--unfreeze", action="append", default=[], metavar="GLOB",
                        help="unfreeze the layers/weights matching GLOB (repeatable)")
    parser.add_argument("--stop-gradient-after", action="append", default=[], metavar="PATH",
                        help="insert a stop-gradient point after this layer (PATH or PATH[k])")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="freezestudio", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", parser_class=_Parser)
    inspect = commands.add_parser("inspect", help="print the tree, flags and parameter counts")
    _add_model_options(inspect)
    _add_edit_options(inspect)
    inspect.add_argument("--json", action="store_true", help="print one JSON object")
    inspect.add_argument("--weights", action="store_true", help="list weights in the text tree")
    apply = commands.add_parser("apply", help="apply edits and save the result")
    _add_model_options(apply)
    _add_edit_options(apply)
    apply.add_argument("-o", "--output", required=True, help="output .keras or .h5 file")
    return parser


def build_gui_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="freezestudio", description="Open the FreezeStudio editor.")
    parser.add_argument("file", nargs="?", help="model to open")
    parser.add_argument("--screenshot", metavar="OUT.png",
                        help="render the window, save it as PNG and exit")
    return parser


def _open(args):
    from freezestudio.core.loading import open_document
    from freezestudio.core.plans import Plan, Rule, apply_plan, load_plan

    document = open_document(args.file, trust=args.trust,
                             custom_object_modules=args.custom_objects)
    plan = load_plan(args.plan) if args.plan else Plan()
    plan.trainable += [Rule(p, False) for p in args.freeze]
    plan.trainable += [Rule(p, True) for p in args.unfreeze]
    plan.stop_gradient_after += args.stop_gradient_after
    apply_plan(document, plan)
    return document


def cmd_inspect(args) -> int:
    from freezestudio.core.report import document_dict, document_text

    document = _open(args)
    if args.json:
        print(json.dumps(document_dict(document)))
    else:
        print(document_text(document, show_weights=args.weights))
    return EXIT_OK


def cmd_apply(args) -> int:
    from freezestudio.core.saving import save_document

    document = _open(args)
    report = save_document(document, args.output)
    counts = document.counts()
    print(f"saved {report.path} ({report.format}): {counts.trainable:,} of {counts.params:,} "
          f"params trainable, {document.receiving_params():,} receive gradient")
    for note in report.notes:
        print(f"note: {note}")
    return EXIT_OK


def _log_failure() -> str:
    log = Path(tempfile.gettempdir()) / f"freezestudio-error-{os.getpid()}.log"
    log.write_text(traceback.format_exc())
    return str(log)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        if argv and argv[0] in SUBCOMMANDS:
            args = build_parser().parse_args(argv)
            return {"inspect": cmd_inspect, "apply": cmd_apply}[args.command](args)
        if argv and argv[0] in ("-h", "--help"):
            build_parser().print_help()
            return EXIT_OK
        args = build_gui_parser().parse_args(argv)
        from freezestudio.gui.app import run_gui

        return run_gui(args.file, screenshot=args.screenshot)
    except UserError as exc:
        print(f"freezestudio: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except BrokenPipeError:
        sys.stdout = None  # the reader went away (e.g. `| head`): nothing left to say
        return EXIT_OK
    except KeyboardInterrupt:
        print("freezestudio: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - last resort: short message, traceback in a log
        log = _log_failure()
        print(f"freezestudio: unexpected failure: {type(exc).__name__}: {exc} "
              f"(details in {log})", file=sys.stderr)
        return EXIT_FAILURE
