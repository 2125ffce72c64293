"""Opening a model in FreezeStudio vs bare `keras.saving.load_model`, and the analysis time.

Usage: python benchmarks/bench_open.py [--model NASNetMobile] [--repeats 3]

Builds the keras.applications model (weights=None), saves it as .keras in a temporary
folder, then:

1. in fresh processes, as a user runs them: `freezestudio inspect FILE` (config-first:
   no TensorFlow, docs/architecture.md) vs `python -c "import keras;
   keras.saving.load_model(FILE)"`, medians and their ratio (target <= 0.25x);
2. in this process: alternates bare Keras loading and `open_document` (the full load,
   which also scans the file for code, builds the tree, strips/re-applies stop-gradient
   points and reads FreezeStudio state) and `open_described_document` (the config-first
   reader); then the time of the gradient-flow analysis and of a "freeze everything"
   edit on the open document;
3. the GUI, in fresh processes (offscreen): from `open_path(FILE)` (the file chosen) to
   the tree painted (config-first), and to the model loaded (edits possible); the file
   chosen at once (as `freezestudio FILE`: the start-up TensorFlow import still going) and
   once TensorFlow has been imported (a user who browsed for the file).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from freezestudio.core.tf_import import import_tensorflow_quietly


def median_seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


_BARE_LOAD = "import sys, keras; keras.saving.load_model(sys.argv[1], compile=False)"


def fresh_process_seconds(command: list[str], repeats: int) -> float:
    """Median wall time of a command run in a fresh process (stdout discarded)."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    return median_seconds(lambda: subprocess.run(command, check=True, env=env,
                                                 stdout=subprocess.DEVNULL,
                                                 stderr=subprocess.DEVNULL), repeats)


def gui_child(path: str, after_tf: bool) -> None:
    """Opens `path` in a fresh window (once TensorFlow is imported if `after_tf`); prints
    the ms to the tree painted and to the model."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QApplication

    from freezestudio.gui.window.main_window import MainWindow
    from freezestudio.gui.window.settings import Settings

    app = QApplication([])
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(QSettings(str(Path(tmp) / "s.ini"), QSettings.Format.IniFormat))
        window = MainWindow(settings=settings)
        window.show()
        app.processEvents()
        while after_tf and window._tf_state.value == "loading":
            app.processEvents()
            time.sleep(0.001)
        start = time.perf_counter()
        window.open_path(path)
        while window.document is None:
            app.processEvents()
            time.sleep(0.001)
        window.tree.viewport().repaint()
        painted = time.perf_counter() - start
        while not window.model_ready:
            app.processEvents()
            time.sleep(0.001)
        loaded = time.perf_counter() - start
        print(f"{painted * 1000:.0f} {loaded * 1000:.0f}")
        window.close()


def gui_seconds(path: Path, repeats: int, after_tf: bool = False) -> tuple[float, float]:
    """Medians of (tree painted, model loaded) over fresh GUI processes."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "QT_QPA_PLATFORM": "offscreen"}
    runs = []
    for _ in range(repeats):
        done = subprocess.run([sys.executable, __file__, "--gui-child", str(path)]
                              + (["--after-tf"] if after_tf else []), check=True,
                              env=env, capture_output=True, text=True)
        runs.append([int(v) / 1000 for v in done.stdout.split()[-2:]])
    return statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="NASNetMobile")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--gui-child", metavar="FILE", help=argparse.SUPPRESS)
    parser.add_argument("--after-tf", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.gui_child:
        gui_child(args.gui_child, args.after_tf)
        return
    import_tensorflow_quietly()
    import keras

    from freezestudio.core.files.loading import open_described_document, open_document
    from freezestudio.core.graph.gradient_flow import analyze

    model = getattr(keras.applications, args.model)(weights=None)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.keras"
        model.save(path)
        inspect = fresh_process_seconds(
            [sys.executable, "-m", "freezestudio", "inspect", str(path)], args.repeats)
        bare = fresh_process_seconds([sys.executable, "-c", _BARE_LOAD, str(path)],
                                     args.repeats)
        painted, loaded = gui_seconds(path, args.repeats)
        painted_tf, loaded_tf = gui_seconds(path, args.repeats, after_tf=True)
        keras_load, app_open, described = [], [], []
        for _ in range(args.repeats):
            keras_load.append(median_seconds(
                lambda: keras.saving.load_model(path, compile=False), 1))
            app_open.append(median_seconds(lambda: open_document(path), 1))
            described.append(median_seconds(lambda: open_described_document(path), 1))
        document = open_document(path)
    layers = sum(1 for _ in document.root.walk())
    k, a, d = (statistics.median(t) for t in (keras_load, app_open, described))
    print(f"{args.model}: {layers} tree nodes, {len(document.weights)} weights")
    print(f"fresh processes: freezestudio inspect {inspect * 1000:.0f} ms   bare load_model "
          f"{bare * 1000:.0f} ms   ratio {inspect / bare:.2f}x (target <= 0.25x)")
    print(f"GUI (fresh process): file chosen -> tree painted {painted * 1000:.0f} ms, "
          f"-> model loaded {loaded * 1000:.0f} ms")
    print(f"GUI, chosen after TensorFlow's import: tree painted {painted_tf * 1000:.0f} ms, "
          f"model loaded {loaded_tf * 1000:.0f} ms")
    print(f"keras.saving.load_model: {k * 1000:.0f} ms   open_document: {a * 1000:.0f} ms   "
          f"ratio {a / k:.2f}x")
    print(f"open_described_document (config-first): {d * 1000:.0f} ms   ratio {d / k:.2f}x")
    analysis = median_seconds(lambda: analyze(document.model), 5)
    print(f"gradient-flow analysis: {analysis * 1000:.1f} ms")

    def freeze_all_and_query():
        document.set_trainable([document.root], False)
        document.invalidate_graph()
        document.receiving_params()

    print(f"freeze-all edit + flags written + receiving params: "
          f"{median_seconds(freeze_all_and_query, 5) * 1000:.1f} ms")


if __name__ == "__main__":
    main()
