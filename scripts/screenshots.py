"""Render the README screenshots by driving the real app offscreen.

Opens the bundled demo models through the GUI (background loading and all), makes a few
edits through the same commands the user's clicks run, and saves PNGs:

    docs/screenshots/start_page.png      the start page (demo models, TF loading status)
    docs/screenshots/cnn_partial.png     cnn_transfer: frozen base, top block unfrozen, BN details
    docs/screenshots/stop_gradient.png   text_classifier: stop-gradient after the embedding
    docs/screenshots/filter.png          the filter box highlighting and acting on matches
    docs/screenshots/dark.png            the stop-gradient view in a dark palette
    docs/screenshots/training.png        fine-tuning the CNN's top block: live loss, per-layer
                                         gradient lines and the layers x steps heatmap
    docs/screenshots/export.png          File > Export: the text classifier to TFLite, verified
    docs/screenshots/first_window_1366x768.png   the first-run window on a 1366x768 screen
    docs/screenshots/first_window_1920x1080.png  ... and on a 1920x1080 screen (all columns
                                                 of the tree in view, details pane narrow)

Usage:
    python scripts/screenshots.py [--out docs/screenshots]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SIZE = (1400, 860)
FIRST_RUN_SCREENS = ((1366, 768), (1920, 1080))
"""Screens the first-run window is shown on (its size from `first_run_geometry`)."""

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ["XDG_CONFIG_HOME"] = tempfile.mkdtemp(prefix="freezestudio-shots-")  # no recents
sys.path.insert(0, str(REPO))

from PySide6.QtCore import QEventLoop, QRect, QTimer  # noqa: E402

from freezestudio.gui.app import create_application  # noqa: E402
from freezestudio.resources import DEMO_DIR  # noqa: E402


def wait_for(signal, timeout_ms: int = 120_000) -> list:
    """Runs the event loop until `signal` fires; returns its arguments."""
    loop = QEventLoop()
    received: list = []

    def on_signal(*args):
        received.extend(args)
        loop.quit()

    signal.connect(on_signal)
    QTimer.singleShot(timeout_ms, loop.quit)
    loop.exec()
    signal.disconnect(on_signal)
    return received


def settle(app, ms: int = 150) -> None:
    loop = QEventLoop()
    QTimer.singleShot(ms, loop.quit)
    loop.exec()
    app.processEvents()


def shoot(app, window, path: Path) -> None:
    settle(app)
    if not window.grab().save(str(path), "PNG"):
        raise SystemExit(f"cannot write {path}")
    print(f"wrote {path.relative_to(REPO) if path.is_relative_to(REPO) else path}")


def open_model(window, path: Path) -> None:
    window.open_path(str(path))
    if wait_for(window.load_finished) != [True]:
        raise SystemExit(f"could not open {path}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "screenshots")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)

    app = create_application()
    from freezestudio.core.edits.plans import load_plan
    from freezestudio.gui.window.main_window import MainWindow

    window = MainWindow()
    window.resize(*SIZE)
    window.show()
    shoot(app, window, args.out / "start_page.png")
    wait_for(window.tf_ready)

    # 1. Transfer learning: the frozen base, its top block unfrozen for fine-tuning.
    open_model(window, DEMO_DIR / "cnn_transfer.keras")
    document, editor, tree = window.document, window.editor, window.tree
    editor.set_trainable([document.layer("conv_base/block3_conv")], True)
    editor.set_trainable([document.weight("head_out:bias")], False)
    tree.expandRecursively(window.model.index_of(document.layer("conv_base")), 1)
    tree.expand(window.model.index_of(document.layer("head_out")))
    tree.select_nodes([document.layer("conv_base/block3_bn")])
    shoot(app, window, args.out / "cnn_partial.png")
    shoot_first_windows(app, window, args.out)

    # 2. A stop-gradient after the embedding (the demo's plan), then the same view filtered.
    window.editor.stack.setClean()
    open_model(window, DEMO_DIR / "text_classifier.keras")
    window.editor.apply_plan(load_plan(DEMO_DIR / "text_plan.json"), "text_plan.json")
    window.tree.expandAll()
    window.tree.select_nodes([window.document.layer("embedding")])
    shoot(app, window, args.out / "stop_gradient.png")

    window.editor.stack.setClean()
    open_model(window, DEMO_DIR / "cnn_transfer.keras")
    window.tree.expandRecursively(window.model.index_of(window.document.layer("conv_base")), 1)
    window.filter_bar.set_text("*_bn")
    window.filter_bar.unfreeze.click()
    window.tree.select_nodes([window.document.layer("conv_base/block2_bn")])
    shoot(app, window, args.out / "filter.png")

    # 3. Fine-tuning the top block of the frozen base, watching loss and gradients.
    window.editor.stack.setClean()
    window.filter_bar.set_text("")
    open_model(window, DEMO_DIR / "cnn_transfer.keras")
    document = window.document
    window.editor.set_trainable([document.layer("conv_base/block3_conv"),
                                 document.layer("conv_base/block3_bn")], True)
    window.tree.expandRecursively(window.model.index_of(document.layer("conv_base")), 1)
    window.tree.select_nodes([document.layer(p) for p in
                              ("conv_base/block3_conv", "head_dense", "head_out")])
    window.training.dock.show()
    wait_for(window.training.preview_shown)
    window.training.panel.form.epochs.setValue(8)
    window.training.panel.form.learning_rate.setCurrentText("3e-4")
    window.training.start()
    wait_for(window.training.run_done, timeout_ms=300_000)
    settle(app, 300)
    shoot(app, window, args.out / "training.png")
    window.training.dock.hide()

    # 4. Export for deployment: the text classifier with its stop-gradient, to TFLite,
    #    verified with the LiteRT interpreter.
    window.editor.stack.setClean()
    open_model(window, DEMO_DIR / "text_classifier.keras")
    window.editor.apply_plan(load_plan(DEMO_DIR / "text_plan.json"), "text_plan.json")
    dialog = window.export.open_dialog(modal=False)
    dialog.set_format("tflite")
    dialog.destination.setText(str(Path(tempfile.mkdtemp(prefix="freezestudio-export-"))
                                   / "text_classifier.tflite"))
    dialog.start()
    wait_for(dialog.done, timeout_ms=300_000)
    shoot(app, dialog, args.out / "export.png")
    dialog.close()

    # 5. The same stop-gradient view with a dark palette (tints follow the palette).
    window.editor.stack.setClean()
    window.filter_bar.set_text("")
    app.setStyle("Fusion")
    app.setPalette(dark_palette())
    open_model(window, DEMO_DIR / "text_classifier.keras")
    window.editor.apply_plan(load_plan(DEMO_DIR / "text_plan.json"), "text_plan.json")
    window.editor.set_trainable([window.document.layer("hidden")], False)
    window.tree.expandAll()
    window.tree.select_nodes([window.document.layer("classifier")])
    shoot(app, window, args.out / "dark.png")

    window.editor.stack.setClean()
    window.close()
    return 0


def shoot_first_windows(app, window, out: Path) -> None:
    """The window at its first-run size on each of `FIRST_RUN_SCREENS`, its columns fitted
    to that size as on opening, then back at `SIZE`."""
    from freezestudio.gui.window.settings import first_run_geometry

    for width, height in FIRST_RUN_SCREENS:
        window.setGeometry(first_run_geometry(QRect(0, 0, width, height)))
        settle(app)
        window.tree.fit_columns()
        shoot(app, window, out / f"first_window_{width}x{height}.png")
    window.resize(*SIZE)
    settle(app)
    window.tree.fit_columns()


def dark_palette():
    from PySide6.QtGui import QColor, QPalette

    palette = QPalette()
    roles = QPalette.ColorRole
    for role, color in ((roles.Window, "#2b2b2b"), (roles.WindowText, "#e6e6e6"),
                        (roles.Base, "#1e1e1e"), (roles.AlternateBase, "#262626"),
                        (roles.Text, "#e6e6e6"), (roles.Button, "#353535"),
                        (roles.ButtonText, "#e6e6e6"), (roles.Highlight, "#2f65ca"),
                        (roles.HighlightedText, "#ffffff"), (roles.ToolTipBase, "#353535"),
                        (roles.ToolTipText, "#e6e6e6"), (roles.Link, "#6fa8ff"),
                        (roles.PlaceholderText, "#8a8a8a")):
        palette.setColor(role, QColor(color))
    return palette


if __name__ == "__main__":
    raise SystemExit(main())
