"""The training engine on real (small) models: learning, integrity, gradient norms against
`tf.GradientTape`, the weight-decay trap, NaN/Inf, cancel and pause."""

import csv
import threading
import time

import keras
import model_builders as mb
import numpy as np
import pytest
import tensorflow as tf

from freezestudio.core.data import Split, TrainingData, load_data
from freezestudio.core.edits.plans import apply_plan as apply_plan_
from freezestudio.core.edits.plans import load_plan, matching_nodes
from freezestudio.core.files.loading import open_document
from freezestudio.core.files.saving import save_document
from freezestudio.core.model.signature import model_io
from freezestudio.core.training.config import (
    CANCELLED,
    COMPLETED,
    DIVERGED,
    Reporter,
    TrainingConfig,
    TrainingControl,
)
from freezestudio.core.training.run_logs import GRAD_NORM_PREFIX, MetricsCsvWriter
from freezestudio.core.training.trainer import Trainer
from freezestudio.resources import DEMO_DIR


def demo(name, plan=None):
    document = open_document(DEMO_DIR / f"{name}.keras")
    if plan:
        apply_plan_(document, load_plan(DEMO_DIR / plan))
    return document


def subset(data: TrainingData, n_train: int, n_val: int | None = None) -> TrainingData:
    data.train = Split([a[:n_train] for a in data.train.x], [a[:n_train] for a in data.train.y])
    if data.validation is not None and n_val is not None:
        v = data.validation
        data.validation = Split([a[:n_val] for a in v.x], [a[:n_val] for a in v.y])
    return data


def demo_data(document, n_train=None, n_val=None):
    data = load_data("demo", model_io(document), model_path=document.source_path)
    return subset(data, n_train, n_val) if n_train else data


def values(document):
    return {w.id: w.variable.numpy().copy() for w in document.weights}


class Recorder(Reporter):
    def __init__(self):
        self.info, self.steps, self.epochs, self.result = None, [], [], None

    def run_started(self, info):
        self.info = info

    def step_finished(self, report):
        self.steps.append(report)

    def epoch_finished(self, report):
        self.epochs.append(report)

    def run_finished(self, result):
        self.result = result


def save_and_open(model, tmp_path, name="model"):
    path = tmp_path / f"{name}.keras"
    model.save(path)
    return open_document(path)


# --- learning and integrity on the demo data ------------------------------------------
def test_cnn_head_learns_and_frozen_backbone_is_bit_identical():
    document = demo("cnn_transfer")
    before = values(document)
    recorder = Recorder()
    result = Trainer(document, demo_data(document, 600, 200),
                     TrainingConfig(epochs=4, batch_size=32, seed=3)).run(recorder)
    assert result.status == COMPLETED and result.steps == 4 * 19
    assert "conv_base" in result.info.feature_cache  # frozen backbone: features cached
    losses = [e.loss for e in recorder.epochs]
    assert losses[-1] < losses[0] - 0.05, losses
    assert recorder.epochs[-1].val_loss < recorder.epochs[0].val_loss
    assert set(recorder.epochs[0].metrics) == {"accuracy"}
    integrity = result.integrity
    assert integrity.ok and not integrity.trained_unchanged
    trained = {w.id for w in document.weights if document.receives_gradient(w)}
    assert trained == {"head_dense:kernel", "head_dense:bias", "head_out:kernel", "head_out:bias"}
    assert set(integrity.changed) == trained
    for weight in document.weights:  # independent of the report: compare the bits here
        same = before[weight.id].tobytes() == weight.variable.numpy().tobytes()
        assert same == (weight.id not in trained), weight.id
    assert document.modified


def test_the_same_seed_gives_the_same_run():
    """The demo CNN's head has Dropout, whose random state was drawn when the model was
    loaded: the seed must reach it, or two runs draw different masks."""
    def run(seed):
        document = demo("cnn_transfer")
        config = TrainingConfig(epochs=1, batch_size=32, seed=seed, cache_features="off")
        result = Trainer(document, demo_data(document, 256), config).run()
        return result.final_loss, values(document)

    loss_a, weights_a = run(5)
    loss_b, weights_b = run(5)
    loss_c, _ = run(6)
    assert loss_a == loss_b and loss_c != loss_a
    assert all(weights_a[k].tobytes() == weights_b[k].tobytes() for k in weights_a)


def test_text_stop_gradient_keeps_embedding_and_reports_norms_where_analysis_says():
    document = demo("text_classifier", "text_plan.json")
    before = values(document)
    recorder = Recorder()
    result = Trainer(document, demo_data(document, 480, 200),
                     TrainingConfig(epochs=3, batch_size=32, seed=0)).run(recorder)
    assert result.status == COMPLETED
    assert recorder.epochs[-1].loss < recorder.epochs[0].loss
    assert np.array_equal(before["embedding:embeddings"],
                          document.weight("embedding:embeddings").variable.numpy())
    assert result.integrity.unchanged == ["embedding:embeddings"]
    for report in recorder.steps:
        for path, norm in report.grad_norms.items():
            receives = document.receives_gradient(document.layer(path)) is not False
            assert (norm is not None) == receives, path
            assert norm is None or norm > 0


def test_unfreezing_between_runs_rebuilds_the_optimizer():
    document = demo("cnn_transfer")
    data = demo_data(document, 128)
    assert document.needs_recompile
    first = Trainer(document, data, TrainingConfig(epochs=1, seed=1)).run()
    assert not document.needs_recompile, "a run compiles the current edits"
    assert "conv_base/block3_conv:kernel" in first.integrity.unchanged
    document.set_trainable(matching_nodes(document, "conv_base/block3_*"), True)
    assert document.needs_recompile, "an edit after the run asks for a recompile again"
    second = Trainer(document, data, TrainingConfig(epochs=1, learning_rate=3e-4, seed=1)).run()
    assert second.status == COMPLETED and second.integrity.ok
    assert "conv_base/block3_conv:kernel" in second.integrity.changed
    assert "conv_base/block2_conv:kernel" in second.integrity.unchanged
    assert second.info.feature_cache.startswith("no cacheable prefix")
    # block3's BN now runs in training mode: its moving statistics move, reported as such
    assert "conv_base/block3_bn:moving_mean" in second.integrity.moved_statistics
    assert "conv_base/block2_bn:moving_mean" in second.integrity.unchanged


# --- the gradient norms against TensorFlow ------------------------------------------------
def test_grad_norms_equal_gradient_tape_on_the_same_batch(tmp_path):
    document = save_and_open(mb.gradient_norms_model(), tmp_path)
    apply_plan_(document, load_plan_dict({"trainable": [{"match": "c:bias", "value": False}],
                                          "stop_gradient_after": ["a"]}))
    rng = np.random.default_rng(0)
    x = rng.standard_normal((16, 6)).astype("float32")
    y = rng.integers(0, 3, 16)
    model = document.model
    receiving = [w for w in document.weights if document.receives_gradient(w)]
    with tf.GradientTape() as tape:
        loss = keras.losses.SparseCategoricalCrossentropy()(y, model(x, training=True))
    grads = tape.gradient(loss, [w.variable for w in receiving])
    expected = {}
    for weight, grad in zip(receiving, grads, strict=True):
        expected[weight.layer.path] = expected.get(weight.layer.path, 0.0) + \
            float(tf.reduce_sum(grad ** 2))
    recorder = Recorder()
    data = TrainingData("arrays", Split([x], [y]))
    Trainer(document, data, TrainingConfig(batch_size=16, shuffle=False, loss=None,
                                           cache_features="off")).run(recorder)
    norms = recorder.steps[0].grad_norms
    assert recorder.steps[0].loss == pytest.approx(float(loss), rel=1e-5)
    assert set(expected) == {"bn", "c", "side", "out"}
    assert norms["a"] is None  # upstream of the stop-gradient
    for path, square in expected.items():
        assert norms[path] == pytest.approx(np.sqrt(square), rel=1e-5), path


def load_plan_dict(data):
    from freezestudio.core.edits.plans import Plan

    return Plan.from_dict({"freezestudio_plan": 1, **data})


def test_embedding_norm_sums_duplicate_rows_like_a_dense_gradient(tmp_path):
    tokens = keras.Input((5,), dtype="int32", name="tokens")
    x = keras.layers.Embedding(7, 4, name="emb")(tokens)
    x = keras.layers.GlobalAveragePooling1D(name="pool")(x)
    out = keras.layers.Dense(2, name="out")(x)
    document = save_and_open(keras.Model(tokens, out), tmp_path)
    x = np.array([[1, 1, 1, 2, 3], [1, 2, 2, 0, 6]], dtype="int32")  # repeated ids
    y = np.array([0, 1])
    with tf.GradientTape() as tape:
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)(
            y, document.model(x, training=True))
    grad = tape.gradient(loss, document.weight("emb:embeddings").variable)
    dense = tf.convert_to_tensor(grad)
    recorder = Recorder()
    Trainer(document, TrainingData("a", Split([x], [y])),
            TrainingConfig(batch_size=2, shuffle=False)).run(recorder)
    assert recorder.steps[0].grad_norms["emb"] == pytest.approx(
        float(tf.norm(dense)), rel=1e-5)


# --- the weight-decay trap ----------------------------------------------------------------
def test_adamw_does_not_move_weights_without_gradient():
    document = demo("text_classifier", "text_plan.json")
    embedding = document.weight("embedding:embeddings").variable
    before = embedding.numpy().copy()
    result = Trainer(document, demo_data(document, 256),
                     TrainingConfig(epochs=1, optimizer="adamw", weight_decay=0.1,
                                    learning_rate=1e-2, cache_features="off")).run()
    assert result.status == COMPLETED and result.integrity.ok
    assert np.array_equal(before, embedding.numpy())  # bit-identical
    assert "hidden:kernel" in result.integrity.changed
    # What plain Keras AdamW does to the same weight when it is handed to the optimizer
    # (a loop over model.trainable_weights with zero gradients where none flows): it moves.
    plain = keras.optimizers.AdamW(learning_rate=1e-2, weight_decay=0.1)
    plain.apply([tf.zeros_like(embedding.value)], [embedding])
    assert not np.array_equal(before, embedding.numpy())


# --- faults ---------------------------------------------------------------------------------
def test_inf_in_data_stops_at_its_step_and_keeps_the_last_good_weights():
    document = demo("text_classifier", "text_plan.json")
    data = demo_data(document, 256)
    # an infinite regression target poisons exactly the batch that holds sample 100
    x, y = data.train.x[0], data.train.y[0]
    onehot = np.eye(3, dtype="float32")[y]
    onehot[100, 0] = np.inf
    data = TrainingData("poisoned", Split([x], [onehot]))
    recorder = Recorder()
    result = Trainer(document, data, TrainingConfig(batch_size=32, shuffle=False,
                                                    loss="mse")).run(recorder)
    assert result.status == DIVERGED
    assert "step 4 (epoch 1, batch 4)" in result.message and "not applied" in result.message
    assert len(recorder.steps) == 3 and result.steps == 4
    for weight in document.weights:
        assert np.all(np.isfinite(weight.variable.numpy())), weight.id
    assert result.integrity.ok  # frozen/no-gradient weights still bit-identical


def test_huge_learning_rate_diverges_cleanly():
    document = demo("text_classifier", "text_plan.json")
    result = Trainer(document, demo_data(document, 512),
                     TrainingConfig(epochs=3, optimizer="sgd", learning_rate=1e9,
                                    shuffle=False)).run()
    assert result.status == DIVERGED
    assert f"at step {result.steps} " in result.message
    assert all(np.all(np.isfinite(w.variable.numpy())) for w in document.weights)


# --- cancel and pause -----------------------------------------------------------------------
def test_cancel_from_the_reporter_stops_within_one_step():
    document = demo("text_classifier", "text_plan.json")
    control = TrainingControl()

    class CancelAtThree(Recorder):
        def step_finished(self, report):
            super().step_finished(report)
            if report.step == 3:
                control.cancel()

    recorder = CancelAtThree()
    result = Trainer(document, demo_data(document, 512),
                     TrainingConfig(epochs=2, batch_size=32)).run(recorder, control)
    assert result.status == CANCELLED and result.steps == 3
    assert [r.step for r in recorder.steps] == [1, 2, 3] and recorder.epochs == []
    assert recorder.result is result and result.integrity.ok
    assert "hidden:kernel" in result.integrity.changed


def test_pause_blocks_the_run_until_resumed():
    document = demo("text_classifier", "text_plan.json")
    control = TrainingControl()

    class PauseAtTwo(Recorder):
        def step_finished(self, report):
            super().step_finished(report)
            if report.step == 2:
                control.pause()

    recorder = PauseAtTwo()
    results = []
    worker = threading.Thread(target=lambda: results.append(Trainer(
        document, demo_data(document, 256), TrainingConfig(epochs=1)).run(recorder, control)))
    start = time.perf_counter()
    worker.start()
    deadline = time.time() + 60
    while len(recorder.steps) < 2 and time.time() < deadline:
        time.sleep(0.01)
    time.sleep(0.5)
    assert len(recorder.steps) == 2 and control.paused and worker.is_alive()
    control.resume()
    worker.join(60)
    wall = time.perf_counter() - start
    assert results[0].status == COMPLETED and results[0].steps == 8
    assert results[0].seconds < wall - 0.4  # the pause is not counted


# --- BatchNorm upstream of a stop-gradient ---------------------------------------------
def test_batchnorm_statistics_upstream_of_stop_gradient_are_reported_apart(tmp_path):
    inputs = keras.Input((5,), name="x")
    x = keras.layers.Dense(6, name="pre")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    out = keras.layers.Dense(1, name="out")(x)
    document = save_and_open(keras.Model(inputs, out), tmp_path)
    apply_plan_(document, load_plan_dict({"stop_gradient_after": ["bn"]}))
    rng = np.random.default_rng(1)
    data = TrainingData("a", Split([rng.normal(3, 2, (64, 5)).astype("float32")],
                                   [rng.normal(size=(64, 1)).astype("float32")]))
    result = Trainer(document, data, TrainingConfig(epochs=1, batch_size=16)).run()
    integrity = result.integrity
    assert "bn:moving_mean" in integrity.upstream_of_stop_gradient
    assert "bn:moving_variance" in integrity.upstream_of_stop_gradient
    assert integrity.ok and "bn:gamma" in integrity.unchanged
    # the cut-off Dense is cached, the BN (training mode) is not: it still runs every step
    assert result.info.feature_cache.startswith("caching the outputs of pre ")
    assert any("upstream of a stop-gradient" in line for line in integrity.summary_lines())


# --- feature caching is exact ------------------------------------------------------------
def test_cached_features_give_the_same_steps_as_the_full_model():
    losses = {}
    for mode in ("on", "off"):
        document = demo("text_classifier", "text_plan.json")
        recorder = Recorder()
        Trainer(document, demo_data(document, 256),
                TrainingConfig(epochs=2, batch_size=32, shuffle=False,
                               cache_features=mode)).run(recorder)
        losses[mode] = [r.loss for r in recorder.steps]
        assert ("caching the outputs of pool" in recorder.info.feature_cache) == (mode == "on")
    np.testing.assert_allclose(losses["on"], losses["off"], rtol=2e-5)


def test_an_input_feeding_a_trained_layer_is_cached_and_the_model_still_saves(tmp_path):
    """Wide and deep: the input feeds the frozen 'deep' layer and the trained 'wide' one,
    so the input itself is part of the cached frontier."""
    features = keras.Input((6,), name="features")
    deep = keras.layers.Dense(8, activation="relu", name="deep")(features)
    wide = keras.layers.Dense(4, name="wide")(features)
    merged = keras.layers.Concatenate(name="merge")([deep, wide])
    out = keras.layers.Dense(1, name="out")(merged)
    path = tmp_path / "wide.keras"
    keras.Model(features, out, name="wide_deep").save(path)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(128, 6)).astype("float32")
    data = TrainingData("arrays", Split([x], [x[:, :1] * 2.0]))
    trained = {}
    for mode in ("on", "off"):
        document = open_document(path)
        document.set_trainable(matching_nodes(document, "deep"), False)
        result = Trainer(document, data, TrainingConfig(
            epochs=2, batch_size=32, shuffle=False, cache_features=mode, loss="mse")).run()
        assert result.status == COMPLETED
        assert ("caching the outputs of features, deep" in result.info.feature_cache) == \
            (mode == "on")
        save_document(document, tmp_path / f"trained_{mode}.keras")
        trained[mode] = values(open_document(tmp_path / f"trained_{mode}.keras"))
    for key, value in trained["off"].items():
        np.testing.assert_allclose(trained["on"][key], value, rtol=1e-5, atol=1e-6)


# --- metrics CSV ---------------------------------------------------------------------------
def test_metrics_csv_columns_are_empty_exactly_without_gradient(tmp_path):
    document = demo("cnn_transfer")
    document.set_trainable(matching_nodes(document, "conv_base/block3_conv"), True)
    document.set_trainable(matching_nodes(document, "head_out"), False)
    path = tmp_path / "m.csv"
    result = Trainer(document, demo_data(document, 96), TrainingConfig(epochs=1)).run(
        MetricsCsvWriter(path))
    assert result.status == COMPLETED
    with open(path) as handle:
        rows = list(csv.DictReader(handle))
    header = list(rows[0])
    expected = [n.path for n in document.root.walk() if n.weights]
    assert header == ["epoch", "step", "loss"] + [GRAD_NORM_PREFIX + p for p in expected]
    assert len(rows) == 3
    for path in expected:
        receives = document.receives_gradient(document.layer(path)) is not False
        for row in rows:
            cell = row[GRAD_NORM_PREFIX + path]
            assert (cell != "") == receives, (path, cell)
            if cell:
                assert float(cell) > 0
    assert {p for p in expected if rows[0][GRAD_NORM_PREFIX + p]} == \
        {"conv_base/block3_conv", "head_dense"}


# --- more models and faults ---------------------------------------------------------------
def test_two_inputs_two_outputs_get_a_loss_and_metric_each(tmp_path):
    document = save_and_open(mb.two_in_two_out(), tmp_path)
    rng = np.random.default_rng(0)
    xa, xb = rng.normal(size=(96, 3)), rng.normal(size=(96, 2))
    data = TrainingData("a", Split([xa, xb], [(xa[:, 0] > 0).astype("int64") + 2 *
                                              (xb[:, 0] > 0), xa.sum(1)]))
    recorder = Recorder()
    result = Trainer(document, data, TrainingConfig(epochs=6, learning_rate=0.02)).run(recorder)
    assert result.status == COMPLETED
    assert [c.split(":")[0] for c in result.info.losses] == [
        "sparse_categorical_crossentropy", "mean_squared_error"]
    assert set(recorder.epochs[0].metrics) == {"cls_accuracy", "reg_mae"}
    assert recorder.epochs[-1].loss < recorder.epochs[0].loss


def test_mixed_float16_uses_loss_scaling_and_still_learns(tmp_path):
    inputs = keras.Input((8,), name="x")
    hidden = keras.layers.Dense(16, activation="relu", name="hidden")(inputs)
    out = keras.layers.Dense(3, activation="softmax", name="out")(hidden)
    keras.Model(inputs, out).save(tmp_path / "m.keras")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(128, 8)).astype("float32")
    data = TrainingData("a", Split([x], [np.argmax(x[:, :3], axis=1)]))
    runs = {}
    for policy in (False, "mixed_float16"):
        document = open_document(tmp_path / "m.keras")
        recorder = Recorder()
        result = Trainer(document, data, TrainingConfig(
            epochs=5, learning_rate=0.01, shuffle=False, mixed_precision=policy)).run(recorder)
        runs[policy] = recorder
        assert result.status == COMPLETED, result.message
    assert any("dynamic loss scaling" in note for note in result.info.notes)
    assert recorder.epochs[-1].loss < recorder.epochs[0].loss
    assert result.integrity.ok and not result.integrity.trained_unchanged
    assert document.model.get_layer("hidden").dtype_policy.name == "float32"
    # the reported norms are of the unscaled gradients: close to the float32 run's
    first16, first32 = runs["mixed_float16"].steps[0], runs[False].steps[0]
    for path in ("hidden", "out"):
        assert first16.grad_norms[path] == pytest.approx(first32.grad_norms[path], rel=2e-2)
    assert first16.loss == pytest.approx(first32.loss, rel=1e-2)


def test_a_corrupt_image_ends_the_run_cleanly_naming_the_step(tmp_path):
    document = demo("cnn_transfer")
    mb.write_image_folder(tmp_path, 2)
    (tmp_path / "b" / "1.png").write_bytes(b"not a png at all")
    data = load_data(tmp_path, model_io(document))
    result = Trainer(document, data, TrainingConfig(batch_size=2, shuffle=False,
                                                    cache_features="off")).run()
    assert result.status == "failed" and result.steps == 1
    assert result.message.startswith("step 2 (epoch 1, batch 2) failed: InvalidArgumentError")
    assert result.message.endswith(f"(cannot decode {tmp_path / 'b' / '1.png'})")
    assert result.integrity.ok  # the first step's changes are reported, nothing else moved
    cached = Trainer(document, data, TrainingConfig(batch_size=2)).run()  # fails while caching
    assert cached.status == "failed" and cached.steps == 0
    assert cached.message.startswith("preparing the run failed: InvalidArgumentError")
    assert "(cannot decode " in cached.message and "1.png)" in cached.message
    assert cached.integrity.changed == []


def test_tensorboard_events_hold_loss_grad_norms_and_epochs(tmp_path):
    from freezestudio.core.training.run_logs import TensorBoardWriter

    document = demo("text_classifier", "text_plan.json")
    data = subset(demo_data(document), 128, 64)
    result = Trainer(document, data, TrainingConfig(epochs=2)).run(
        TensorBoardWriter(tmp_path / "tb"))
    assert result.status == COMPLETED

    def scalars(folder):
        found = {}
        for event_file in sorted((tmp_path / "tb" / folder).glob("events.out.tfevents.*")):
            for event in tf.compat.v1.train.summary_iterator(str(event_file)):
                for value in event.summary.value:
                    if value.metadata.plugin_data.plugin_name == "scalars":
                        found.setdefault(value.tag, []).append(
                            (event.step, float(tf.make_ndarray(value.tensor))))
        return found

    train = scalars("train")
    assert [s for s, _ in train["loss"]] == list(range(1, 9))
    assert set(train) == {"loss", "grad_norm/hidden", "grad_norm/classifier", "epoch_loss",
                          "epoch_accuracy"}  # no column for the cut-off embedding
    assert len(train["epoch_loss"]) == 2
    assert set(scalars("validation")) == {"epoch_loss", "epoch_accuracy"}


@pytest.mark.parametrize(("middle", "auto", "inexact"), [
    (keras.layers.Dropout(0.0, name="mid"), True, None),
    (keras.layers.Dropout(0.3, name="mid"), False, "'mid' (Dropout) behaves differently"),
    (keras.layers.GaussianNoise(0.1, name="mid"), False, "behaves differently"),
    (keras.layers.BatchNormalization(name="mid"), False, "BatchNormalization 'mid' is trainable"),
    (keras.layers.Dense(5, name="mid"), True, None),  # takes `training`, ignores it
])
def test_cache_plan_is_exact_only_for_training_independent_prefixes(tmp_path, middle, auto,
                                                                      inexact):
    from freezestudio.core.training.feature_cache import plan_cache

    document = save_and_open(mb.pre_middle_post(middle), tmp_path)
    apply_plan_(document, load_plan_dict({"stop_gradient_after": ["mid"]}))
    document.set_trainable(matching_nodes(document, "pre"), False)
    plan = plan_cache(document, document.model, "auto")  # exact only: may stop earlier
    assert plan.enabled and plan.exact
    assert plan.frontier == (["mid_stop_gradient"] if auto else ["pre"]), plan.reason
    forced = plan_cache(document, document.model, "on")
    assert forced.enabled and forced.frontier == ["mid_stop_gradient"]
    assert forced.exact == (inexact is None)
    if inexact:
        assert inexact in forced.reason and "inference mode" in forced.reason
    assert not plan_cache(document, document.model, "off").enabled


def test_cache_on_without_a_frozen_prefix_is_refused(tmp_path):
    from freezestudio.core.errors import UserError

    document = save_and_open(mb.pre_middle_post(keras.layers.Dense(5, name="mid")), tmp_path)
    data = TrainingData("a", Split([np.zeros((8, 6), "float32")], [np.zeros(8, "int64")]))
    with pytest.raises(UserError, match="--cache-features on: no cacheable prefix \\('pre' "
                                        "receives gradient\\)"):
        Trainer(document, data, TrainingConfig(cache_features="on")).prepare()


def test_preview_losses_reads_without_touching_the_document():
    from freezestudio.core.training.setup import preview_losses

    document = demo("text_classifier", "text_plan.json")
    document.mark_unmodified()
    data = demo_data(document, 64)
    (choice,) = preview_losses(document, data)
    assert choice.describe() == ("sparse_categorical_crossentropy: the model's saved "
                                 "compile config")
    assert not document.modified
    with pytest.raises(Exception, match="needs labels shaped like"):
        preview_losses(document, data, "mse")


def test_collected_reports_export_to_the_same_csv_as_the_live_writer(tmp_path):
    from freezestudio.core.training.run_logs import write_metrics_csv

    document = demo("text_classifier", "text_plan.json")
    recorder = Recorder()
    from freezestudio.core.training.config import MultiReporter

    Trainer(document, subset(demo_data(document), 96, 32), TrainingConfig(epochs=2)).run(
        MultiReporter(recorder, MetricsCsvWriter(tmp_path / "live.csv")))
    write_metrics_csv(tmp_path / "export.csv", recorder.info, recorder.steps, recorder.epochs)
    assert (tmp_path / "export.csv").read_text() == (tmp_path / "live.csv").read_text()
    history = (tmp_path / "export.epochs.csv").read_text().splitlines()
    assert history[0] == "epoch,loss,accuracy,val_loss,val_accuracy" and len(history) == 3
