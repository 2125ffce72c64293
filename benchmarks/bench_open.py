"""Opening a model in FreezeStudio vs bare `keras.saving.load_model`, and the analysis time.

Usage: python benchmarks/bench_open.py [--model NASNetMobile] [--repeats 3]

Builds the keras.applications model (weights=None), saves it as .keras in a temporary
folder, then alternates bare Keras loading and `open_document` (which also scans the file
for code, builds the tree, strips/re-applies stop-gradient points and reads FreezeStudio
state). Prints the medians and their ratio, then the time of the gradient-flow analysis
and of a "freeze everything" edit on the open document.
"""

from __future__ import annotations

import argparse
import statistics
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="NASNetMobile")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    import_tensorflow_quietly()
    import keras

    from freezestudio.core.files.loading import open_document
    from freezestudio.core.graph.gradient_flow import analyze

    model = getattr(keras.applications, args.model)(weights=None)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.keras"
        model.save(path)
        keras_load, app_open = [], []
        for _ in range(args.repeats):
            keras_load.append(median_seconds(
                lambda: keras.saving.load_model(path, compile=False), 1))
            app_open.append(median_seconds(lambda: open_document(path), 1))
        document = open_document(path)
    layers = sum(1 for _ in document.root.walk())
    k, a = statistics.median(keras_load), statistics.median(app_open)
    print(f"{args.model}: {layers} tree nodes, {len(document.weights)} weights")
    print(f"keras.saving.load_model: {k * 1000:.0f} ms   open_document: {a * 1000:.0f} ms   "
          f"ratio {a / k:.2f}x")
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
