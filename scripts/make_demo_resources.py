"""Generate FreezeStudio's demo models and data into `freezestudio/resources/demo/`.

Everything is synthesised procedurally (no downloaded weights or datasets) and
deterministic: fixed seeds, single-threaded TensorFlow, deterministic ops.

Two transfer-learning scenarios are produced, each as a genuinely pre-trained
model saved *before* fine-tuning on its second task, plus the data for that task:

* `text_classifier.keras` + `text_task_b.npz` + `text_plan.json`: an
  Embedding pre-trained on task A (8-way topic classification of token
  sequences), re-headed for task B (3-way "sentiment" of similar sequences).
  The intended edit keeps the embedding fixed with a stop-gradient after it.
* `cnn_transfer.keras` + `cnn_task_b.npz`: a nested convolutional base
  (`conv_base`) pre-trained on task A (which shape is drawn), frozen, with a
  fresh head for task B (how many shapes are drawn).

Usage:
    python scripts/make_demo_resources.py [--out freezestudio/resources/demo] [--no-check]

With `SOURCE_DATE_EPOCH` set (the date stored as `date_saved` in the `.keras`
files), two runs on the same platform give byte-identical files.

`--no-check` skips the (unsaved) head-only fine-tuning run that confirms task
B is learnable from the transferred features.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import zipfile
from pathlib import Path

# Determinism and quiet logs must be configured before TensorFlow is imported.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ["TF_DETERMINISTIC_OPS"] = "1"
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

SEED = 1234
MAX_FILE_BYTES = 2 * 1024 * 1024
REPO_ROOT = Path(__file__).resolve().parents[1]

# ---------------------------------------------------------------- text scenario
SEQ_LEN = 40
N_FILLER = 192  # tokens 1..191 are topic-free "function words"; 0 is reserved for padding
N_CLUSTERS = 8  # word clusters, one per task-A topic
CLUSTER_SIZE = 40
VOCAB = N_FILLER + N_CLUSTERS * CLUSTER_SIZE  # 512
EMBED_DIM = 32
TEXT_HIDDEN = 32
TEXT_A_CLASSES = N_CLUSTERS
# Task B ("sentiment"): clusters 0-2 carry positive words, 3-5 negative, 6-7 neutral.
SENTIMENT_GROUPS = ((3, 4, 5), (6, 7), (0, 1, 2))  # label 0=negative, 1=neutral, 2=positive
TEXT_B_CLASSES = len(SENTIMENT_GROUPS)

# ----------------------------------------------------------------- cnn scenario
IMG = 32
SHAPES = ("circle", "square", "triangle", "cross")
CNN_B_CLASSES = 3  # task B: one, two or three shapes in the image
CNN_HEAD_UNITS = 64


def configure_determinism() -> None:
    """Makes TensorFlow single-threaded and deterministic (call once, before any op)."""
    tf.config.threading.set_inter_op_parallelism_threads(1)
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.experimental.enable_op_determinism()


# ============================================================== text: data


def _cluster_tokens(cluster: int) -> np.ndarray:
    start = N_FILLER + cluster * CLUSTER_SIZE
    return np.arange(start, start + CLUSTER_SIZE)


def _sequences_from_cluster_weights(rng: np.random.Generator, weights: np.ndarray) -> np.ndarray:
    """Samples token sequences given, per sequence, the share of each cluster.

    Args:
        rng: Random generator.
        weights: `(n, N_CLUSTERS)` share of content tokens from each cluster; the
            rest of each sequence (1 - row sum) is filler tokens.

    Returns:
        int32 array `(n, SEQ_LEN)`.
    """
    n = len(weights)
    filler = 1.0 - weights.sum(axis=1, keepdims=True)
    probs = np.concatenate([filler, weights], axis=1)  # column 0 = filler
    cum = probs.cumsum(axis=1)
    u = rng.random((n, SEQ_LEN, 1))
    source = (u > cum[:, None, :]).sum(axis=2)  # 0 = filler, k = cluster k-1
    source = np.minimum(source, N_CLUSTERS)
    # Zipf-like filler frequencies, uniform words within a cluster.
    filler_p = 1.0 / np.arange(1, N_FILLER)
    filler_p /= filler_p.sum()
    filler_tok = rng.choice(np.arange(1, N_FILLER), size=(n, SEQ_LEN), p=filler_p)
    cluster_tok = (
        N_FILLER + (source - 1) * CLUSTER_SIZE + rng.integers(0, CLUSTER_SIZE, size=(n, SEQ_LEN))
    )
    return np.where(source == 0, filler_tok, cluster_tok).astype("int32")


def make_text_task_a(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Task A: which topic is a sequence about (its dominant word cluster)."""
    y = rng.integers(0, TEXT_A_CLASSES, size=n)
    weights = rng.uniform(0.0, 0.04, size=(n, N_CLUSTERS))  # background chatter
    weights[np.arange(n), y] = rng.uniform(0.15, 0.35, size=n)
    return _sequences_from_cluster_weights(rng, weights), y.astype("int32")


def make_text_task_b(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Task B: sentiment = which group of clusters dominates the sequence."""
    y = rng.integers(0, TEXT_B_CLASSES, size=n)
    weights = rng.uniform(0.0, 0.03, size=(n, N_CLUSTERS))
    for i, label in enumerate(y):
        group = np.array(SENTIMENT_GROUPS[label])
        share = rng.dirichlet(np.ones(len(group))) * rng.uniform(0.2, 0.35)
        weights[i, group] += share
    return _sequences_from_cluster_weights(rng, weights), y.astype("int32")


# ============================================================ text: models


def build_text_model(
    n_classes: int, hidden_name: str, out_name: str, model_name: str
) -> keras.Model:
    """Builds the Functional text classifier (Embedding -> pool -> MLP head)."""
    tokens = keras.Input(shape=(SEQ_LEN,), dtype="int32", name="tokens")
    x = keras.layers.Embedding(VOCAB, EMBED_DIM, name="embedding")(tokens)
    x = keras.layers.GlobalAveragePooling1D(name="pool")(x)
    x = keras.layers.Dense(TEXT_HIDDEN, activation="relu", name=hidden_name)(x)
    out = keras.layers.Dense(n_classes, activation="softmax", name=out_name)(x)
    return keras.Model(tokens, out, name=model_name)


def _compile(model: keras.Model, learning_rate=1e-3) -> None:
    """Compiles with Adam, sparse categorical cross-entropy and accuracy.

    Args:
        model: Model to compile.
        learning_rate: A float or a `LearningRateSchedule`.
    """
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate, name="adam"),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )


def save_task_b(model, label: str, classes: int, model_path: Path, data_path: Path, arrays):
    """Reports the re-headed model's task-B accuracy before fine-tuning (chance level is
    the point), then saves the model and the task-B data. Returns that accuracy."""
    xb, yb, xb_val, yb_val = arrays
    acc_b0 = float(model.evaluate(xb_val, yb_val, verbose=0)[1])
    print(f"{label}, {classes} classes) val accuracy before fine-tuning: "
          f"{acc_b0:.3f} (chance {1 / classes:.3f})")
    save_model(model, model_path)
    np.savez_compressed(data_path, x=xb, y=yb, x_val=xb_val, y_val=yb_val)
    return acc_b0


def save_model(model: keras.Model, path: Path) -> None:
    """Saves a compiled model so that it reloads without optimizer warnings.

    An unbuilt optimizer is saved with 2 variables, and `load_model` then warns that
    it cannot restore them into the built optimizer. Building it first (its slots
    are all zero) makes the saved and the reloaded optimizer agree.

    Args:
        model: Compiled model.
        path: Destination `.keras` file.
    """
    if not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)
    model.save(path)
    make_reproducible(path)


def _renumber_shared_ids(node, mapping: dict) -> None:
    """Replaces `shared_object_id` values (Python `id()`s) by 1, 2, ... in order."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "shared_object_id":
                node[key] = mapping.setdefault(value, len(mapping) + 1)
            else:
                _renumber_shared_ids(value, mapping)
    elif isinstance(node, list):
        for value in node:
            _renumber_shared_ids(value, mapping)


def make_reproducible(path: Path) -> None:
    """Rewrites a `.keras` archive so that identical weights give identical bytes.

    Keras stores memory addresses as `shared_object_id`s, the save time in
    `metadata.json` and zip entry times. The ids are renumbered consistently, the
    entry times are fixed, and `date_saved` comes from `SOURCE_DATE_EPOCH` when
    that is set (the reproducible-builds convention); otherwise it is kept.

    Args:
        path: A `.keras` file written by `model.save`.
    """
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    with zipfile.ZipFile(path) as src:
        entries = [(info, src.read(info.filename)) for info in src.infolist()]
    tmp = path.with_name(path.name + ".tmp")
    with zipfile.ZipFile(tmp, "w") as dst:
        for info, data in entries:
            if info.filename == "config.json":
                config = json.loads(data)
                _renumber_shared_ids(config, {})
                data = json.dumps(config).encode()
            elif info.filename == "metadata.json" and epoch is not None:
                meta = json.loads(data)
                stamp = time.gmtime(int(epoch))
                meta["date_saved"] = time.strftime("%Y-%m-%d@%H:%M:%S", stamp)
                data = json.dumps(meta).encode()
            fixed = zipfile.ZipInfo(info.filename, date_time=(1980, 1, 1, 0, 0, 0))
            fixed.compress_type = info.compress_type
            fixed.external_attr = info.external_attr
            dst.writestr(fixed, data)
    os.replace(tmp, path)


def text_scenario(out_dir: Path, check: bool) -> dict:
    """Pre-trains on text task A, re-heads for task B and writes the files.

    Args:
        out_dir: Destination directory.
        check: Also fine-tune a throw-away copy on task B to show it is learnable.

    Returns:
        Summary numbers for the report.
    """
    rng = np.random.default_rng(SEED)
    xa, ya = make_text_task_a(rng, 8000)
    xa_val, ya_val = make_text_task_a(rng, 1000)

    pre = build_text_model(TEXT_A_CLASSES, "topic_hidden", "topic_classifier", "topic_model")
    _compile(pre, 3e-3)
    pre.fit(xa, ya, batch_size=64, epochs=12, shuffle=True, verbose=0)
    acc_a = float(pre.evaluate(xa_val, ya_val, verbose=0)[1])
    print(f"[text] task A (topic, {TEXT_A_CLASSES} classes) val accuracy: {acc_a:.3f}")

    xb, yb = make_text_task_b(rng, 1200)
    xb_val, yb_val = make_text_task_b(rng, 400)

    model = build_text_model(TEXT_B_CLASSES, "hidden", "classifier", "text_classifier")
    model.get_layer("embedding").set_weights(pre.get_layer("embedding").get_weights())
    _compile(model)
    model_path = out_dir / "text_classifier.keras"
    acc_b0 = save_task_b(model, "[text] task B (sentiment", TEXT_B_CLASSES, model_path,
                         out_dir / "text_task_b.npz", (xb, yb, xb_val, yb_val))
    plan = {"freezestudio_plan": 1, "trainable": [], "stop_gradient_after": ["embedding"]}
    (out_dir / "text_plan.json").write_text(json.dumps(plan) + "\n")

    summary = {"task_a_val_acc": acc_a, "task_b_val_acc_before": acc_b0}
    if check:
        summary["task_b_val_acc_head_only"] = _check_text_b(model_path, xb, yb, xb_val, yb_val)
    return summary


def _check_text_b(path: Path, x, y, x_val, y_val) -> float:
    """Fine-tunes a copy with the embedding frozen (same effect as the plan)."""
    keras.utils.set_random_seed(SEED + 1)
    model = keras.saving.load_model(path)
    model.get_layer("embedding").trainable = False
    _compile(model, 3e-3)
    model.fit(x, y, batch_size=32, epochs=20, verbose=0)
    acc = float(model.evaluate(x_val, y_val, verbose=0)[1])
    print(f"[text] check: task B val accuracy after head-only fine-tuning (not saved): {acc:.3f}")
    return acc


# ============================================================== cnn: images


def _shape_mask(kind: int, cy: float, cx: float, r: float, angle: float) -> np.ndarray:
    """Boolean IMGxIMG mask of one shape centred at (cy, cx) with radius r."""
    yy, xx = np.mgrid[0:IMG, 0:IMG].astype("float32") + 0.5
    dy, dx = yy - cy, xx - cx
    c, s = np.cos(angle), np.sin(angle)
    u, v = c * dx + s * dy, -s * dx + c * dy  # rotated coordinates
    if SHAPES[kind] == "circle":
        return dx * dx + dy * dy <= r * r
    if SHAPES[kind] == "square":
        h = r * 0.85
        return (np.abs(u) <= h) & (np.abs(v) <= h)
    if SHAPES[kind] == "triangle":
        # Equilateral triangle inscribed in radius r: three half-planes.
        inside = np.ones_like(u, dtype=bool)
        for k in range(3):
            a = angle + np.pi / 2 + k * 2 * np.pi / 3
            inside &= dx * np.cos(a) + dy * np.sin(a) >= -r / 2
        return inside
    w = r * 0.33  # cross
    return ((np.abs(u) <= w) & (np.abs(v) <= r)) | ((np.abs(v) <= w) & (np.abs(u) <= r))


def _random_colour(rng: np.random.Generator, avoid: np.ndarray | None = None) -> np.ndarray:
    while True:
        col = rng.uniform(0.0, 1.0, size=3)
        if avoid is None or np.abs(col - avoid).max() > 0.45:
            return col


def _draw_image(rng: np.random.Generator, kinds: list[int]) -> np.ndarray:
    """Draws non-overlapping shapes on a plain background, quantised to 1/255."""
    bg = _random_colour(rng)
    img = np.broadcast_to(bg, (IMG, IMG, 3)).copy()
    placed: list[tuple[float, float, float]] = []
    for kind in kinds:
        for _ in range(200):
            r = rng.uniform(4.0, 6.0) if len(kinds) > 1 else rng.uniform(5.0, 10.0)
            cy, cx = rng.uniform(r + 1, IMG - r - 1, size=2)
            if all((cy - py) ** 2 + (cx - px) ** 2 > (r + pr + 2) ** 2 for py, px, pr in placed):
                break
        placed.append((cy, cx, r))
        mask = _shape_mask(kind, cy, cx, r, rng.uniform(0, 2 * np.pi))
        img[mask] = _random_colour(rng, avoid=bg)
    return (np.round(img * 255) / 255).astype("float32")


def make_cnn_task_a(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Task A: which shape (circle, square, triangle, cross) is in the image."""
    y = rng.integers(0, len(SHAPES), size=n)
    x = np.stack([_draw_image(rng, [int(k)]) for k in y])
    return x, y.astype("int32")


def make_cnn_task_b(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Task B: how many shapes (1, 2 or 3, label 0..2) are in the image."""
    y = rng.integers(0, CNN_B_CLASSES, size=n)
    x = np.stack([_draw_image(rng, list(rng.integers(0, len(SHAPES), size=int(k) + 1))) for k in y])
    return x, y.astype("int32")


# ============================================================== cnn: models


def build_conv_base() -> keras.Model:
    """The nested Functional feature extractor `conv_base`."""
    inp = keras.Input(shape=(IMG, IMG, 3), name="image")
    x = inp
    for i, filters in enumerate((16, 32, 64), start=1):
        x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"block{i}_conv")(
            x
        )
        x = keras.layers.BatchNormalization(name=f"block{i}_bn")(x)
        x = keras.layers.ReLU(name=f"block{i}_relu")(x)
        if i < 3:
            x = keras.layers.MaxPooling2D(2, name=f"block{i}_pool")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(inp, x, name="conv_base")


def build_cnn_model(base: keras.Model, n_classes: int, prefix: str, name: str) -> keras.Model:
    """Wraps `base` as the first layer of a Functional model with a new head."""
    inp = keras.Input(shape=(IMG, IMG, 3), name="image")
    x = base(inp)
    x = keras.layers.Dense(CNN_HEAD_UNITS, activation="relu", name=f"{prefix}_dense")(x)
    x = keras.layers.Dropout(0.2, name=f"{prefix}_dropout")(x)
    out = keras.layers.Dense(n_classes, activation="softmax", name=f"{prefix}_out")(x)
    return keras.Model(inp, out, name=name)


def cnn_scenario(out_dir: Path, check: bool) -> dict:
    """Pre-trains the conv base on task A, freezes it, re-heads for task B.

    Args:
        out_dir: Destination directory.
        check: Also fine-tune a throw-away copy's head on task B.

    Returns:
        Summary numbers for the report.
    """
    rng = np.random.default_rng(SEED + 100)
    xa, ya = make_cnn_task_a(rng, 10000)
    xa_val, ya_val = make_cnn_task_a(rng, 800)

    base = build_conv_base()
    pre = build_cnn_model(base, len(SHAPES), "shape", "shape_model")
    epochs, batch = 12, 64
    # Cosine decay: a constant rate leaves BatchNorm's moving statistics (and so the
    # validation accuracy in inference mode) swinging between epochs.
    steps = epochs * -(-len(xa) // batch)
    _compile(pre, keras.optimizers.schedules.CosineDecay(2e-3, steps, alpha=0.02))
    pre.fit(xa, ya, batch_size=batch, epochs=epochs, shuffle=True, verbose=0)
    acc_a = float(pre.evaluate(xa_val, ya_val, verbose=0)[1])
    print(f"[cnn] task A (shape, {len(SHAPES)} classes) val accuracy: {acc_a:.3f}")

    xb, yb = make_cnn_task_b(rng, 1500)
    xb_val, yb_val = make_cnn_task_b(rng, 300)

    base.trainable = False
    model = build_cnn_model(base, CNN_B_CLASSES, "head", "cnn_transfer")
    _compile(model)
    model_path = out_dir / "cnn_transfer.keras"
    acc_b0 = save_task_b(model, "[cnn] task B (count", CNN_B_CLASSES, model_path,
                         out_dir / "cnn_task_b.npz", (xb, yb, xb_val, yb_val))

    summary = {"task_a_val_acc": acc_a, "task_b_val_acc_before": acc_b0}
    if check:
        summary["task_b_val_acc_after_check"] = _check_cnn_b(model_path, xb, yb, xb_val, yb_val)
    return summary


def _check_cnn_b(path: Path, x, y, x_val, y_val) -> dict:
    """Replays the intended workflow on a copy (the saved file is untouched).

    Stage 1 trains only the head; stage 2 also unfreezes `conv_base/block3_*` and
    fine-tunes at a lower learning rate.
    """
    keras.utils.set_random_seed(SEED + 2)
    model = keras.saving.load_model(path)
    _compile(model, 3e-3)
    model.fit(x, y, batch_size=32, epochs=20, verbose=0)
    head = float(model.evaluate(x_val, y_val, verbose=0)[1])
    print(f"[cnn] check: task B val accuracy after head-only training (not saved): {head:.3f}")
    base = model.get_layer("conv_base")
    base.trainable = True
    for layer in base.layers:
        layer.trainable = layer.name.startswith("block3_")
    _compile(model, 3e-4)
    model.fit(x, y, batch_size=32, epochs=10, verbose=0)
    top = float(model.evaluate(x_val, y_val, verbose=0)[1])
    print(f"[cnn] check: ... after also fine-tuning conv_base/block3_* (not saved): {top:.3f}")
    return {"head_only": head, "head_and_block3": top}


# ==================================================================== main


def report_sizes(out_dir: Path) -> None:
    """Prints every file's size and fails if any reaches the 2 MB limit."""
    too_big = []
    for path in sorted(out_dir.iterdir()):
        size = path.stat().st_size
        print(f"  {path.name:24s} {size / 1024:8.1f} KiB")
        if size >= MAX_FILE_BYTES:
            too_big.append(path.name)
    if too_big:
        sys.exit(f"files over 2 MB: {', '.join(too_big)}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path,
                        default=REPO_ROOT / "freezestudio" / "resources" / "demo")
    parser.add_argument(
        "--no-check", action="store_true", help="skip the head-only fine-tuning sanity check"
    )
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)

    configure_determinism()
    keras.utils.set_random_seed(SEED)
    text = text_scenario(args.out, check=not args.no_check)
    keras.utils.set_random_seed(SEED + 10)
    cnn = cnn_scenario(args.out, check=not args.no_check)
    print(json.dumps({"text": text, "cnn": cnn}, indent=1))
    report_sizes(args.out)


if __name__ == "__main__":
    main()
