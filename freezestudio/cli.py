"""Command line: no sub-command starts the GUI; sub-commands run headless (docs/architecture.md).

Exit codes: `commands.exit_codes.ExitCode` (0 success, 2 user error with one line
`freezestudio: error: ...` on stderr, 1 unexpected failure with the traceback in a log
file, 3 an integrity violation after training, 130 interrupted). The log file is the
platform's (`core.diagnostics.log_file`), the one Help > Open Log Folder shows.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys
import traceback
import warnings

from freezestudio import __version__
from freezestudio.commands.exit_codes import ExitCode
from freezestudio.core.diagnostics.log_file import record_failure
from freezestudio.core.errors import UserError


class _Parser(argparse.ArgumentParser):
    """argparse with the project's one-line error format and exit code 2."""

    def error(self, message):
        raise UserError(message)


def _command_modules() -> dict:
    """`{name: module}` for every module in freezestudio.commands (except helpers)."""
    import freezestudio.commands as package

    names = sorted(info.name for info in pkgutil.iter_modules(package.__path__))
    modules = {name: importlib.import_module(f"freezestudio.commands.{name}") for name in names}
    return {name: module for name, module in modules.items() if hasattr(module, "run")}


def build_parser(commands: dict) -> argparse.ArgumentParser:
    parser = _Parser(prog="freezestudio",
                     description="Edit what a Keras model may learn. Without a sub-command, "
                                 "opens the editor: freezestudio [FILE] [--screenshot OUT.png]; "
                                 "freezestudio --version; freezestudio --install-desktop")
    subparsers = parser.add_subparsers(dest="command", parser_class=_Parser)
    for name, module in commands.items():
        module.configure(subparsers.add_parser(name, help=module.HELP))
    return parser


def build_gui_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="freezestudio", description="Open the FreezeStudio editor.")
    parser.add_argument("file", nargs="?", help="model to open")
    parser.add_argument("--screenshot", metavar="OUT.png",
                        help="render the window, save it as PNG and exit")
    parser.add_argument("--version", action="store_true",
                        help="print the version and exit")
    parser.add_argument("--install-desktop", action="store_true",
                        help="install the desktop entry, icon and .keras file type for the "
                             "current user (Linux, BSD) and exit")
    return parser


def _install_desktop() -> int:
    from freezestudio.commands.install_desktop import install_desktop

    written = install_desktop()
    print(f"installed {len(written)} files, the desktop entry as {written[0]}")
    return ExitCode.OK


def _failure_message(exc: Exception, argv: list[str]) -> str:
    """The one stderr line of an unexpected failure, naming the log that has the details."""
    log = record_failure(traceback.format_exc(), "freezestudio " + " ".join(argv))
    where = f"details in {log}" if log else "no log file could be written"
    return f"freezestudio: unexpected failure: {type(exc).__name__}: {exc} ({where})"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if not sys.warnoptions:  # Keras/TF library warnings are noise on a command line (-W shows)
        warnings.simplefilter("ignore")
    try:
        commands = _command_modules()
        if argv and argv[0] in commands:
            args = build_parser(commands).parse_args(argv)
            return commands[args.command].run(args)
        if argv and argv[0] in ("-h", "--help"):
            build_parser(commands).print_help()
            return ExitCode.OK
        args = build_gui_parser().parse_args(argv)
        if args.version:
            print(f"freezestudio {__version__}")
            return ExitCode.OK
        if args.install_desktop:
            return _install_desktop()
        from freezestudio.gui.app import run_gui

        return run_gui(args.file, screenshot=args.screenshot)
    except UserError as exc:
        print(f"freezestudio: error: {exc}", file=sys.stderr)
        return ExitCode.USER_ERROR
    except BrokenPipeError:
        sys.stdout = None  # the reader went away (e.g. `| head`): nothing left to say
        return ExitCode.OK
    except KeyboardInterrupt:
        print("freezestudio: interrupted", file=sys.stderr)
        return ExitCode.INTERRUPTED
    except Exception as exc:  # noqa: BLE001 - last resort: short message, traceback in a log
        print(_failure_message(exc, argv), file=sys.stderr)
        return ExitCode.FAILURE
