"""The two-stage transfer recipe in one FreezeStudio run against the same recipe by hand
in Keras, in one process: same final weights (to float tolerance), time of each.

The recipe: a MobileNetV2 backbone (random weights, nothing is downloaded) nested in a
model with a new head. Stage 1 trains the head with the backbone frozen; from epoch
`E + 1` the backbone's last two blocks (and the layers after them) train too, at the
learning rate x 0.1 for everything, their BatchNorm layers kept frozen (the Keras
transfer-learning guide's advice).

- FreezeStudio: one `Trainer` run of a plan with a `schedule` stage (feature caching
  `auto`: the frozen backbone's features are cached in stage 1, a shorter prefix in
  stage 2).
- Keras by hand: `compile` + `fit` for stage 1, then set `trainable` on the blocks
  (BatchNorm left frozen), `compile` again with the lower rate (a new optimizer: Keras
  fixes the trainable set at compile) and `fit` for stage 2.

Plain SGD (no momentum) makes the two exactly comparable: FreezeStudio keeps optimizer
state across a stage change and a recompile does not, and plain SGD has none. No
shuffling, so both see the batches in the same order.

Usage: .venv/bin/python benchmarks/bench_schedule.py [--size 64] [--samples 512]
       [--epochs 3] [--quick]
"""

from __future__ import annotations

import argparse
import os
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
from freezestudio.core.training.config import TrainingConfig  # noqa: E402
from freezestudio.core.training.trainer import Trainer  # noqa: E402

LR, FACTOR, BATCH = 0.05, 0.1, 32
TOP_BLOCKS = ("block_15_", "block_16_", "Conv_1")


def transfer_model(size: int):
    keras.utils.set_random_seed(0)
    base = keras.applications.MobileNetV2(input_shape=(size, size, 3), alpha=0.35,
                                          weights=None, include_top=False)
    inputs = keras.Input((size, size, 3), name="image")
    x = keras.layers.GlobalAveragePooling2D(name="gap")(base(inputs, training=False))
    out = keras.layers.Dense(10, activation="softmax", name="head")(x)
    return keras.Model(inputs, out, name="transfer"), base.name


def data(size: int, samples: int):
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (samples, size, size, 3)).astype("float32")
    return x, rng.integers(0, 10, samples)


def freezestudio_run(path: Path, backbone: str, x, y, epochs: int):
    document = open_document(path)
    unfreeze = [{"match": f"{backbone}/{p}*", "value": True} for p in TOP_BLOCKS]
    apply_plan(document, Plan.from_dict({
        "freezestudio_plan": 1, "trainable": [{"match": backbone, "value": False}],
        "schedule": [{"from_epoch": epochs + 1, "trainable": unfreeze, "batchnorm": "frozen",
                      "lr_multipliers": [{"match": "*", "value": FACTOR}]}]}))
    config = TrainingConfig(epochs=2 * epochs, batch_size=BATCH, learning_rate=LR,
                            optimizer="sgd", momentum=0.0, shuffle=False, metrics=False,
                            loss="sparse_categorical_crossentropy", cache_features="auto")
    start = time.perf_counter()
    result = Trainer(document, TrainingData("arrays", Split([x], [y])), config).run()
    seconds = time.perf_counter() - start
    assert result.integrity.ok, result.integrity.frozen_changed
    return seconds, {w.id: w.variable.numpy() for w in document.weights}, result


def keras_run(path: Path, backbone: str, x, y, epochs: int):
    model = keras.models.load_model(path)
    base = model.get_layer(backbone)
    start = time.perf_counter()
    base.trainable = False
    model.compile(keras.optimizers.SGD(LR), "sparse_categorical_crossentropy")
    model.fit(x, y, batch_size=BATCH, epochs=epochs, shuffle=False, verbose=0)
    base.trainable = True
    for layer in base.layers:
        layer.trainable = layer.name.startswith(TOP_BLOCKS) and \
            not isinstance(layer, keras.layers.BatchNormalization)
    model.compile(keras.optimizers.SGD(LR * FACTOR), "sparse_categorical_crossentropy")
    model.fit(x, y, batch_size=BATCH, epochs=epochs, shuffle=False, verbose=0)
    seconds = time.perf_counter() - start
    weights = {}
    for layer in model.layers + base.layers:
        prefix = "" if layer in model.layers else f"{backbone}/"
        for weight in layer.weights:
            weights[f"{prefix}{layer.name}:{weight.name}"] = weight.numpy()
    return seconds, weights


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--samples", type=int, default=512)
    parser.add_argument("--epochs", type=int, default=3, help="epochs per stage")
    parser.add_argument("--quick", action="store_true", help="32x32, 128 samples, 1+1 epochs")
    args = parser.parse_args()
    if args.quick:
        args.size, args.samples, args.epochs = 32, 128, 1
    model, backbone = transfer_model(args.size)
    x, y = data(args.size, args.samples)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "transfer.keras"
        model.save(path)
        ours, trained, result = freezestudio_run(path, backbone, x, y, args.epochs)
        theirs, by_hand = keras_run(path, backbone, x, y, args.epochs)
    shared = sorted(set(trained) & set(by_hand))
    assert len(shared) == len(trained), set(trained) ^ set(by_hand)
    diff = max(float(np.max(np.abs(trained[k] - by_hand[k]))) for k in shared)
    moved = sum(1 for k in shared if np.any(trained[k] != by_hand[k]))
    print(f"two-stage recipe, MobileNetV2 {args.size}x{args.size}, {args.samples} samples, "
          f"batch {BATCH}, {args.epochs}+{args.epochs} epochs, SGD lr {LR} then x{FACTOR}")
    for stage in result.info.stages:
        print(f"  stage from epoch {stage['epoch']}: {stage['receiving_layers']} layer(s) "
              f"train; feature cache: {stage['feature_cache']}")
    print(f"  same final weights: max |difference| {diff:.2e} over {len(shared)} weights "
          f"({moved} not bit-identical)")
    print(f"  FreezeStudio, one run: {ours:.2f} s; Keras by hand (fit, recompile, fit): "
          f"{theirs:.2f} s; ratio Keras / FreezeStudio {theirs / ours:.2f}x")
    return 0 if diff < 1e-4 else 1


if __name__ == "__main__":
    sys.exit(main())
