"""Starting the GUI: `run_gui` is what `freezestudio [FILE] [--screenshot OUT.png]` calls.

The window appears before TensorFlow is imported (the first task of the window's
background thread, `background.threads.TaskHost`).
Without a display on Linux it says so in one line and returns 2 instead of letting Qt
abort.
"""

from __future__ import annotations

import os
import sys
import time

EXIT_NO_DISPLAY = 2
SCREENSHOT_TIMEOUT_MS = 300_000
SCREENSHOT_SIZE = (1280, 800)


def has_display() -> bool:
    """False on Linux without X11/Wayland and without an explicit Qt platform plugin."""
    if not sys.platform.startswith("linux") or os.environ.get("QT_QPA_PLATFORM"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def no_display_message() -> str:
    return ("freezestudio: no display (DISPLAY/WAYLAND_DISPLAY unset): set "
            "QT_QPA_PLATFORM=offscreen to run the window headless (e.g. with --screenshot), "
            "or use the command line: freezestudio inspect FILE, freezestudio apply ...")


def create_application():
    from PySide6.QtWidgets import QApplication

    from freezestudio import __version__
    from freezestudio.gui.common import style
    from freezestudio.gui.window import settings
    from freezestudio.resources import APP_ID

    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setOrganizationName(settings.ORGANIZATION)
    app.setApplicationName(settings.APPLICATION)
    app.setApplicationDisplayName("FreezeStudio")
    app.setApplicationVersion(__version__)
    app.setDesktopFileName(APP_ID)  # Wayland: the window's entry and icon
    app.setWindowIcon(style.app_icon())
    return app


def run_gui(file: str | None = None, screenshot: str | None = None) -> int:
    """Runs the editor, optionally opening `file`.

    Args:
        file: a model to open once the window shows.
        screenshot: render the window (with `file` loaded) to this PNG and exit.

    Returns:
        The exit code: 0, 2 without a display or when the screenshot's file failed to load,
        1 when the screenshot could not be written.
    """
    if not has_display():
        print(no_display_message(), file=sys.stderr)
        return EXIT_NO_DISPLAY
    started = time.perf_counter()
    app = create_application()
    from freezestudio.gui.background.gc_guard import MainThreadGarbageCollector
    from freezestudio.gui.window.main_window import MainWindow

    collector = MainThreadGarbageCollector(parent=app)
    window = MainWindow()
    app.aboutToQuit.connect(window.shutdown)
    app.aboutToQuit.connect(collector.stop)
    sys.excepthook = _make_excepthook(window)
    if screenshot:
        return _run_screenshot(app, window, file, screenshot)
    window.show()
    if os.environ.get("FREEZESTUDIO_TIMING"):
        app.processEvents()
        print(f"window shown after {time.perf_counter() - started:.3f} s", file=sys.stderr)
    if file:
        window.open_path(file)
    return app.exec()


def _make_excepthook(window):
    """A bug in a slot must not pass silently nor kill the window: say so, keep the
    traceback in the log file the CLI writes too (Help > Open Log Folder shows it)."""
    import traceback

    from freezestudio.core.diagnostics.log_file import record_failure
    from freezestudio.gui.common import dialogs

    def hook(kind, value, tb):
        details = "".join(traceback.format_exception(kind, value, tb))
        log = record_failure(details, "freezestudio (window)")
        where = f"details in {log}" if log else "no log file could be written"
        print(f"freezestudio: unexpected failure: {kind.__name__}: {value} ({where})",
              file=sys.stderr)
        if kind is not KeyboardInterrupt:
            dialogs.show_error(window, "Unexpected error",
                               f"{kind.__name__}: {value}\n\n"
                               + (f"The details were written to {log}." if log else where),
                               details)
    return hook


def _batch_dialogs() -> None:
    """In screenshot mode nobody can answer: errors go to stderr, questions say no."""
    from freezestudio.gui.common import dialogs

    def show_error(parent, title, message, details=""):
        print(f"freezestudio: error: {message}", file=sys.stderr)

    dialogs.show_error = show_error
    dialogs.ask_trust = lambda parent, message: False
    dialogs.ask_custom_module = lambda parent, class_name, message: None
    dialogs.ask_unsaved = lambda parent, name: dialogs.DISCARD


def _run_screenshot(app, window, file: str | None, out: str) -> int:
    from PySide6.QtCore import QTimer

    _batch_dialogs()
    window.resize(*SCREENSHOT_SIZE)
    window.show()
    outcome = {"code": 0}

    def grab() -> None:
        app.processEvents()
        if not window.grab().save(out, "PNG"):
            print(f"freezestudio: error: cannot write {out}", file=sys.stderr)
            outcome["code"] = 1
        window.close()
        app.quit()

    def loaded(ok: bool) -> None:
        outcome["code"] = 0 if ok else EXIT_NO_DISPLAY
        QTimer.singleShot(200, grab)

    def timeout() -> None:
        print("freezestudio: error: timed out waiting for the model to load", file=sys.stderr)
        outcome["code"] = 1
        grab()

    if file:
        window.load_finished.connect(loaded)
        window.open_path(file)
        QTimer.singleShot(SCREENSHOT_TIMEOUT_MS, timeout)
    else:
        QTimer.singleShot(200, grab)
    app.exec()
    return outcome["code"]
