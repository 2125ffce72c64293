"""Training speed: FreezeStudio's engine against plain `model.fit`, in one process.

1. The same 1M-parameter MLP, data, batch size, optimizer (Adam), loss and metric
   (accuracy), trained alternately by `model.fit` and by the engine (per-layer gradient
   norms on, reported every step). Each round trains several epochs with both; the
   first epoch of every call (tracing, set-up) is the warm-up and is not timed, the other
   epochs are. Prints steps/s of both and the ratio engine / fit (>= 1.0: as fast or faster).
   Twice: with both on their default `jit_compile="auto"` (XLA only with a GPU), and with
   XLA forced on for both (`model.compile(jit_compile=True)`, `--jit-compile on`).
2. MobileNetV2 (96x96, random weights: nothing is downloaded) as a nested backbone with a
   new head: the engine's step time with everything trainable, with a stop-gradient after
   the backbone only, and with the backbone frozen (feature caching off, so this is the
   step itself).
3. Feature caching: head-only epochs on the frozen MobileNetV2 with `cache_features` off
   and on (the cached run pays for one inference pass over the data up front).

Usage: .venv/bin/python benchmarks/bench_training.py [--rounds N] [--quick]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from freezestudio.core.tf_import import import_tensorflow_quietly  # noqa: E402

import_tensorflow_quietly()

import keras  # noqa: E402
import numpy as np  # noqa: E402

from freezestudio.core.data import Split, TrainingData  # noqa: E402
from freezestudio.core.edits.plans import Plan, apply_plan  # noqa: E402
from freezestudio.core.files.loading import open_document  # noqa: E402
from freezestudio.core.training.config import Reporter, TrainingConfig  # noqa: E402
from freezestudio.core.training.trainer import Trainer  # noqa: E402


class EpochTimes(Reporter):
    def __init__(self):
        self.times, self.steps = [], []

    def epoch_finished(self, report):
        self.times.append(report.seconds)

    def step_finished(self, report):
        self.steps.append(report.elapsed)


class FitEpochTimes(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.times.append(time.perf_counter() - self._start)

    def on_train_begin(self, logs=None):
        self.times = []


def mlp(seed: int):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((512,), name="x")
    x = keras.layers.Dense(1024, activation="relu", name="dense_1")(inputs)
    x = keras.layers.Dense(512, activation="relu", name="dense_2")(x)
    out = keras.layers.Dense(10, activation="softmax", name="out")(x)
    return keras.Model(inputs, out, name="mlp")


def open_copy(model, folder: Path, name: str):
    path = folder / f"{name}.keras"
    model.save(path)
    return open_document(path)


def bench_fit_vs_engine(folder: Path, rounds: int, epochs: int, batch: int, samples: int,
                        jit: bool = False):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(samples, 512)).astype("float32")
    y = rng.integers(0, 10, samples).astype("int32")
    model = mlp(0)
    mode = "XLA on for both (jit_compile=True, --jit-compile on)" if jit else \
        "jit_compile auto for both"
    print(f"\n1M-parameter MLP, {mode}: {model.count_params():,} params, {samples} samples, "
          f"batch {batch}, {samples // batch} steps/epoch; {rounds} rounds x {epochs} epochs "
          f"(first epoch of each call untimed)")
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy",
                  metrics=["accuracy"], jit_compile=True if jit else "auto")
    document = open_copy(mlp(0), folder, "mlp")
    data = TrainingData("arrays", Split([x], [y]))
    config = TrainingConfig(epochs=epochs, batch_size=batch, cache_features="off", seed=0,
                            jit_compile="on" if jit else "auto")
    steps = samples // batch
    fit_rates, engine_rates = [], []
    for r in range(rounds):
        callback = FitEpochTimes()
        model.fit(x, y, batch_size=batch, epochs=epochs, verbose=0, callbacks=[callback],
                  shuffle=True)
        reporter = EpochTimes()
        Trainer(document, data, config).run(reporter)
        fit_rate = steps * (epochs - 1) / sum(callback.times[1:])
        engine_rate = steps * (epochs - 1) / sum(reporter.times[1:])
        fit_rates.append(fit_rate)
        engine_rates.append(engine_rate)
        print(f"  round {r + 1}: fit {fit_rate:6.1f} steps/s   engine (grad norms) "
              f"{engine_rate:6.1f} steps/s   ratio {engine_rate / fit_rate:.3f}")
    ratios = [e / f for e, f in zip(engine_rates, fit_rates, strict=True)]
    print(f"  median: fit {statistics.median(fit_rates):.1f} steps/s, engine "
          f"{statistics.median(engine_rates):.1f} steps/s, ratio engine/fit "
          f"{statistics.median(ratios):.3f} (min {min(ratios):.3f}, max {max(ratios):.3f})")
    return statistics.median(ratios)


def mobilenet(seed: int, size: int):
    keras.utils.set_random_seed(seed)
    backbone = keras.applications.MobileNetV2(input_shape=(size, size, 3), include_top=False,
                                              weights=None, pooling="avg")
    inputs = keras.Input((size, size, 3), name="image")
    x = backbone(inputs)
    x = keras.layers.Dense(64, activation="relu", name="head_dense")(x)
    out = keras.layers.Dense(10, activation="softmax", name="head_out")(x)
    return keras.Model(inputs, out, name="transfer")


def step_time(document, data, batch: int, cache: str = "off") -> float:
    """Median seconds per step over the second epoch (the first traces and warms up)."""
    reporter = EpochTimes()
    Trainer(document, data, TrainingConfig(epochs=2, batch_size=batch, cache_features=cache,
                                           seed=0)).run(reporter)
    steps = np.diff(reporter.steps)
    per_epoch = len(reporter.steps) // 2
    return float(np.median(steps[per_epoch:]))


def bench_mobilenet(folder: Path, size: int, batch: int, steps: int, head_epochs: int):
    rng = np.random.default_rng(1)
    samples = batch * steps
    x = rng.uniform(0, 1, size=(samples, size, size, 3)).astype("float32")
    y = rng.integers(0, 10, samples).astype("int32")
    data = TrainingData("arrays", Split([x], [y]))
    model = mobilenet(0, size)
    backbone = model.layers[1].name
    print(f"\nMobileNetV2 {size}x{size} (nested '{backbone}', "
          f"{model.count_params():,} params), batch {batch}, {steps} steps/epoch")
    full = step_time(open_copy(model, folder, "mnv2"), data, batch)
    print(f"  fully trainable:               {full * 1000:7.1f} ms/step")
    cut = open_copy(model, folder, "mnv2")
    apply_plan(cut, Plan.from_dict({"freezestudio_plan": 1, "stop_gradient_after": [backbone]}))
    cut_time = step_time(cut, data, batch)
    print(f"  stop-gradient after backbone:  {cut_time * 1000:7.1f} ms/step "
          f"({full / cut_time:.2f}x faster)")
    frozen = open_copy(model, folder, "mnv2")
    apply_plan(frozen, Plan.from_dict({"freezestudio_plan": 1,
                                       "trainable": [{"match": backbone, "value": False}]}))
    frozen_time = step_time(frozen, data, batch)
    print(f"  backbone frozen:               {frozen_time * 1000:7.1f} ms/step "
          f"({full / frozen_time:.2f}x faster than fully trainable)")
    timings = {}
    for mode in ("off", "on"):
        reporter = EpochTimes()
        start = time.perf_counter()
        result = Trainer(frozen, data, TrainingConfig(epochs=head_epochs, batch_size=batch,
                                                      cache_features=mode, seed=0)).run(reporter)
        timings[mode] = (time.perf_counter() - start, reporter.times, result.info.feature_cache)
    off_total, off_epochs, _ = timings["off"]
    on_total, on_epochs, reason = timings["on"]
    print(f"  feature cache ({reason})")
    print(f"  head training, {head_epochs} epochs: cache off {off_total:.2f} s, on "
          f"{on_total:.2f} s ({off_total / on_total:.1f}x faster, features included)")
    print(f"  per head epoch after the first: off {statistics.median(off_epochs[1:]):.3f} s, on "
          f"{statistics.median(on_epochs[1:]):.4f} s "
          f"({statistics.median(off_epochs[1:]) / statistics.median(on_epochs[1:]):.0f}x)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--quick", action="store_true", help="smaller sizes (a smoke test)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        if args.quick:
            for jit in (False, True):
                bench_fit_vs_engine(folder, 2, 3, 64, 64 * 20, jit)
            bench_mobilenet(folder, 64, 16, 4, 3)
        else:
            for jit in (False, True):
                bench_fit_vs_engine(folder, args.rounds, args.epochs, 64, 64 * 100, jit)
            bench_mobilenet(folder, 96, 32, 8, 5)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
