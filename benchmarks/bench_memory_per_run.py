"""Memory growth per training run: FreezeStudio's `Trainer` vs plain Keras `compile` + `fit`.

Usage: python benchmarks/bench_memory_per_run.py [--runs 20] [--samples 96]

Each engine runs in its own fresh process (a subprocess of this script), on the demo CNN
and the first `--samples` demo samples: `--runs` runs of one epoch each, the resident set
size (Linux /proc/self/status VmRSS) after every run (after `gc.collect()`). Printed: the RSS
series, the growth per run after 4 warm-up runs, and FreezeStudio's growth as a ratio of
plain Keras's. Every run builds new `tf.function`s (a new step, or Keras's new train
function after `compile`); TensorFlow keeps part of each traced graph, so both grow.
"""

from __future__ import annotations

import argparse
import subprocess
import sys

WARM_UP = 4

CHILD = """
import gc, sys
from pathlib import Path
import numpy as np
from freezestudio.core.tf_import import import_tensorflow_quietly
from freezestudio.resources import DEMO_DIR
import_tensorflow_quietly()
import keras

engine, runs, samples = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def rss():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
with np.load(DEMO_DIR / "cnn_task_b.npz") as npz:
    x, y = npz["x"][:samples], npz["y"][:samples]
if engine == "freezestudio":
    from freezestudio.core.data import Split, TrainingData
    from freezestudio.core.files.loading import open_document
    from freezestudio.core.training.config import TrainingConfig
    from freezestudio.core.training.trainer import Trainer
    document = open_document(DEMO_DIR / "cnn_transfer.keras")
    def one_run(seed):
        Trainer(document, TrainingData("arrays", Split([x], [y])),
                TrainingConfig(epochs=1, batch_size=32, cache_features="off", seed=seed)).run()
else:
    model = keras.saving.load_model(DEMO_DIR / "cnn_transfer.keras", compile=False)
    def one_run(seed):
        model.compile(optimizer=keras.optimizers.Adam(1e-3),
                      loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        model.fit(x, y, batch_size=32, epochs=1, verbose=0)
series = []
for seed in range(runs):
    one_run(seed)
    gc.collect()
    series.append(rss())
print(" ".join(f"{value:.1f}" for value in series))
"""


def measure(engine: str, runs: int, samples: int) -> list[float]:
    done = subprocess.run([sys.executable, "-c", CHILD, engine, str(runs), str(samples)],
                          capture_output=True, text=True, check=True)
    return [float(value) for value in done.stdout.strip().splitlines()[-1].split()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--samples", type=int, default=96)
    args = parser.parse_args()
    growth = {}
    for engine in ("freezestudio", "keras"):
        series = measure(engine, args.runs, args.samples)
        growth[engine] = (series[-1] - series[WARM_UP - 1]) / (len(series) - WARM_UP)
        print(f"{engine:>12}: RSS MB {' '.join(f'{v:.0f}' for v in series)}")
        print(f"{'':>12}  growth {growth[engine]:.2f} MB per run after {WARM_UP} runs")
    if growth["keras"] > 0:
        print(f"ratio freezestudio/keras: {growth['freezestudio'] / growth['keras']:.2f}")


if __name__ == "__main__":
    main()
