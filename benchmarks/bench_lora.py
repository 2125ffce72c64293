"""LoRA against full fine-tuning on the BERT test model (keras_hub, built from config with
random weights: `tests/model_builders.tiny_bert_classifier`), in one process.

Both runs use FreezeStudio's engine with the same data, batch size, optimizer (Adam) and
epochs; rounds alternate between them. The first epoch of each run (tracing) is not timed.
- full: everything trainable;
- LoRA: the plan `{"trainable": [{"match": "bert", "value": false}], "lora": [query and
  value projections of every encoder, rank R]}` (the head stays trainable).
Prints the trainable share of each and the median step time, and the ratio full / LoRA
(> 1.0: the LoRA step is faster). For reference it also times plain `model.fit` after
keras_hub's own `backbone.enable_lora(R)` against `fit` with everything trainable.

Usage: .venv/bin/python benchmarks/bench_lora.py [--rounds N] [--rank R]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from freezestudio.core.tf_import import import_tensorflow_quietly  # noqa: E402

import_tensorflow_quietly()

import keras  # noqa: E402
import model_builders as mb  # noqa: E402
import numpy as np  # noqa: E402

from freezestudio.core.data import Split, TrainingData  # noqa: E402
from freezestudio.core.edits.plans import Plan, apply_plan  # noqa: E402
from freezestudio.core.model.document import Document  # noqa: E402
from freezestudio.core.model.tree import build_keras_tree  # noqa: E402
from freezestudio.core.training.config import Reporter, TrainingConfig  # noqa: E402
from freezestudio.core.training.trainer import Trainer  # noqa: E402

SAMPLES, BATCH, EPOCHS = 256, 16, 3


class StepTimes(Reporter):
    def __init__(self):
        self.epochs = []

    def epoch_finished(self, report):
        self.epochs.append(report.seconds)


def data():
    x = mb.bert_inputs(batch=SAMPLES)
    y = np.arange(SAMPLES) % 3
    return x, y


def document(rank: int | None):
    model = mb.tiny_bert_classifier()
    doc = Document(build_keras_tree(model), model, "bench.keras", "keras")
    if rank:
        apply_plan(doc, Plan.from_dict({
            "freezestudio_plan": 1, "trainable": [{"match": "bert", "value": False}],
            "lora": [{"match": "bert/*:*/query/kernel", "rank": rank},
                     {"match": "bert/*:*/value/kernel", "rank": rank}]}))
    return doc


def engine_step_seconds(doc) -> float:
    x, y = data()
    recorder = StepTimes()
    Trainer(doc, TrainingData("bench", Split([x["padding_mask"], x["segment_ids"],
                                              x["token_ids"]], [y])),
            TrainingConfig(epochs=EPOCHS, batch_size=BATCH, cache_features="off",
                           metrics=False)).run(recorder)
    return statistics.median(recorder.epochs[1:]) / (SAMPLES // BATCH)


def fit_step_seconds(rank: int | None) -> float:
    model = mb.tiny_bert_classifier()
    if rank:
        model.get_layer("bert").enable_lora(rank)
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x, y = data()
    times = []

    class Times(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            times.append(time.perf_counter() - self.start)

    model.fit(x, y, batch_size=BATCH, epochs=EPOCHS, verbose=0, callbacks=[Times()])
    return statistics.median(times[1:]) / (SAMPLES // BATCH)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rank", type=int, default=4)
    args = parser.parse_args()
    full_doc, lora_doc = document(None), document(args.rank)
    for name, doc in (("full", full_doc), ("LoRA", lora_doc)):
        counts = doc.counts()
        print(f"{name:>4}: {counts.trainable:,} of {counts.params:,} trainable "
              f"({counts.trainable / counts.params:.1%})")
    full, lora = [], []
    for _ in range(args.rounds):
        full.append(engine_step_seconds(document(None)))
        lora.append(engine_step_seconds(document(args.rank)))
    f, lo = statistics.median(full), statistics.median(lora)
    print(f"engine step: full {f * 1e3:.2f} ms, LoRA rank {args.rank} {lo * 1e3:.2f} ms, "
          f"ratio full/LoRA {f / lo:.2f}")
    kf = statistics.median(fit_step_seconds(None) for _ in range(args.rounds))
    kl = statistics.median(fit_step_seconds(args.rank) for _ in range(args.rounds))
    print(f"plain fit step: full {kf * 1e3:.2f} ms, keras_hub enable_lora({args.rank}) "
          f"{kl * 1e3:.2f} ms, ratio {kf / kl:.2f}; engine LoRA / fit LoRA {lo / kl:.2f}")


if __name__ == "__main__":
    main()
