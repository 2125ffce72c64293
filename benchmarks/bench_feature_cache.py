"""Feature caching end to end: a head-only run on a frozen MobileNetV2, in one process.

The workload of issue #11: MobileNetV2 (64x64, random weights: nothing is downloaded) as a
frozen nested backbone with a small new head, 512 synthetic samples written to an .npz and
read back as `freezestudio train` reads them, batch 64, SGD. For each epoch count, three
runs from fresh copies of the model:

- FreezeStudio with `cache_features="off"` (every step runs the frozen backbone),
- FreezeStudio with `cache_features="on"` (one caching pass, then head-only epochs),
- plain Keras: `model.compile` + `model.fit` on the frozen model.

End to end is everything a run call costs: for FreezeStudio `Trainer(...).run()` (setup,
the caching pass, tracing, every epoch, the write-back and the integrity check), for Keras
`compile` + `fit` (its tracing included). Each run is repeated `--repeats` times and the
best time kept (other work on the machine only ever adds time); the load average is
printed before each round. The break-even epoch count is the smallest measured epoch count
at which the cached run was faster than the uncached one, and where straight lines (fixed
time plus per-epoch time, fitted through the measured points) cross.

Usage: .venv/bin/python benchmarks/bench_feature_cache.py [--repeats N] [--epochs 1 3 6 20]
       [--samples 512] [--validation-split 0]
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from freezestudio.core.tf_import import import_tensorflow_quietly  # noqa: E402

import_tensorflow_quietly()

import keras  # noqa: E402
import numpy as np  # noqa: E402
from bench_training import mobilenet  # noqa: E402

from freezestudio.core.data import load_data  # noqa: E402
from freezestudio.core.edits.plans import matching_nodes  # noqa: E402
from freezestudio.core.files.loading import open_document  # noqa: E402
from freezestudio.core.model.signature import model_io  # noqa: E402
from freezestudio.core.training.config import COMPLETED, TrainingConfig  # noqa: E402
from freezestudio.core.training.trainer import Trainer  # noqa: E402

SIZE, BATCH = 64, 64
MODES = ("off", "on", "keras")


def write_workload(folder: Path, samples: int) -> tuple[Path, Path, str]:
    """The model file, the .npz and the backbone's name."""
    rng = np.random.default_rng(1)
    model = mobilenet(0, SIZE)
    model_path, data_path = folder / "mnv2.keras", folder / "data.npz"
    model.save(model_path)
    np.savez(data_path, x=rng.uniform(0, 1, (samples, SIZE, SIZE, 3)).astype("float32"),
             y=rng.integers(0, 10, samples).astype("int32"))
    return model_path, data_path, model.layers[1].name


def run_freezestudio(model_path: Path, data_path: Path, backbone: str, epochs: int,
                     cache: str, validation: float) -> tuple[float, str]:
    document = open_document(model_path)
    document.set_trainable(matching_nodes(document, backbone), False)
    data = load_data(data_path, model_io(document), validation_split=validation, seed=0)
    config = TrainingConfig(epochs=epochs, batch_size=BATCH, optimizer="sgd",
                            learning_rate=0.01, cache_features=cache, seed=0)
    start = time.perf_counter()
    result = Trainer(document, data, config).run()
    seconds = time.perf_counter() - start
    assert result.status == COMPLETED, result.message
    return seconds, result.info.feature_cache


def run_keras(model_path: Path, data_path: Path, backbone: str, epochs: int,
              validation: float) -> float:
    model = keras.saving.load_model(model_path)
    model.get_layer(backbone).trainable = False
    arrays = np.load(data_path)
    x, y = arrays["x"], arrays["y"]
    start = time.perf_counter()
    model.compile(keras.optimizers.SGD(0.01, momentum=0.9), "sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    model.fit(x, y, batch_size=BATCH, epochs=epochs, shuffle=True, verbose=0,
              validation_split=validation)
    return time.perf_counter() - start


def fixed_and_per_epoch(points: dict) -> tuple[float, float]:
    """Least-squares `seconds = fixed + per_epoch * epochs` through {epochs: seconds}."""
    per_epoch, fixed = np.polyfit(list(points), list(points.values()), 1)
    return float(fixed), float(per_epoch)


def break_even(off: dict, on: dict) -> tuple[int | None, float]:
    """(the smallest measured epoch count at which the cached run was faster, None if at
    none; the epoch count where the two fitted lines cross)."""
    faster = [epochs for epochs in sorted(off) if on[epochs] < off[epochs]]
    off_fixed, off_epoch = fixed_and_per_epoch(off)
    on_fixed, on_epoch = fixed_and_per_epoch(on)
    crossing = (on_fixed - off_fixed) / (off_epoch - on_epoch) if off_epoch > on_epoch \
        else math.inf
    return (faster[0] if faster else None), crossing


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, nargs="+", default=[1, 3, 6, 20])
    parser.add_argument("--samples", type=int, default=512,
                        help="e.g. 625 with --validation-split 0.2: partial last batches")
    parser.add_argument("--validation-split", type=float, default=0.0)
    args = parser.parse_args()
    val = args.validation_split
    with tempfile.TemporaryDirectory() as tmp:
        model_path, data_path, backbone = write_workload(Path(tmp), args.samples)
        print(f"MobileNetV2 {SIZE}x{SIZE} frozen ('{backbone}') + Dense(64) + Dense(10), "
              f"{args.samples} samples from an .npz (validation split {val:g}), batch {BATCH}, "
              f"SGD; best of {args.repeats}")
        run_freezestudio(model_path, data_path, backbone, 1, "on", val)  # warm up the process
        best = {mode: {} for mode in MODES}
        reason = ""
        for repeat in range(args.repeats):
            load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
            print(f"  round {repeat + 1}: load average {load}")
            for epochs in args.epochs:
                times = {"off": run_freezestudio(model_path, data_path, backbone, epochs,
                                                 "off", val)[0]}
                times["on"], reason = run_freezestudio(model_path, data_path, backbone,
                                                       epochs, "on", val)
                times["keras"] = run_keras(model_path, data_path, backbone, epochs, val)
                for mode, seconds in times.items():
                    best[mode][epochs] = min(seconds, best[mode].get(epochs, math.inf))
                print(f"    {epochs:3d} epochs: off {times['off']:6.2f} s  on "
                      f"{times['on']:6.2f} s  keras fit {times['keras']:6.2f} s")
        print(f"  feature cache: {reason}")
        print("  epochs   cache off   cache on   keras fit   off/on   fit/on")
        for epochs in args.epochs:
            off, on, fit = (best[mode][epochs] for mode in MODES)
            print(f"  {epochs:6d}   {off:7.2f} s  {on:7.2f} s  {fit:8.2f} s   "
                  f"{off / on:5.2f}x   {fit / on:5.2f}x")
        for mode in MODES:
            fixed, per_epoch = fixed_and_per_epoch(best[mode])
            print(f"  {mode:5s}: fixed {fixed:5.2f} s + {per_epoch:6.3f} s per epoch")
        first, crossing = break_even(best["off"], best["on"])
        print(f"  break-even: the cached run was faster from {first} epoch(s) on (of those "
              f"measured); the fitted lines cross at {crossing:.2f} epochs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
