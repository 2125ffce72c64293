"""A run computes the metrics of the model's saved compile config, as Keras would, and the
file it saves keeps them: the values are checked against plain Keras's `evaluate`."""

import keras
import numpy as np
import pytest

from freezestudio.core.data import Split, TrainingData
from freezestudio.core.files.loading import open_document
from freezestudio.core.files.saving import save_document
from freezestudio.core.training.config import Reporter, TrainingConfig
from freezestudio.core.training.trainer import Trainer


class Recorder(Reporter):
    def __init__(self):
        self.info, self.epochs = None, []

    def run_started(self, info):
        self.info = info

    def epoch_finished(self, report):
        self.epochs.append(report)


def _compiled_file(tmp_path, model, loss, metrics):
    model.compile(optimizer="adam", loss=loss, metrics=metrics)
    path = tmp_path / "compiled.keras"
    model.save(path)
    return open_document(path)


def _run(document, x, y):
    """One epoch, validated on the training data itself (the metrics at the final weights)."""
    recorder = Recorder()
    data = TrainingData("arrays", Split(x, y), Split(x, y), "explicit")
    result = Trainer(document, data, TrainingConfig(epochs=1, batch_size=16, shuffle=False,
                                                    cache_features="off", seed=0)).run(recorder)
    assert result.steps > 0
    return recorder


def _keras_evaluate(document, tmp_path, x, y):
    """Plain Keras's metrics of the trained, saved file (compiled from its own config)."""
    path = tmp_path / "trained.keras"
    save_document(document, path)
    plain = keras.saving.load_model(path)
    return plain.evaluate(x, y, batch_size=16, verbose=0, return_dict=True)


def test_classifier_reports_its_saved_accuracy_and_top_k(tmp_path):
    rng = np.random.default_rng(0)
    inputs = keras.Input((6,), name="x")
    out = keras.layers.Dense(4, activation="softmax", name="probs")(
        keras.layers.Dense(8, activation="relu", name="hidden")(inputs))
    document = _compiled_file(
        tmp_path, keras.Model(inputs, out), "sparse_categorical_crossentropy",
        ["accuracy", keras.metrics.SparseTopKCategoricalAccuracy(k=2, name="top2")])
    x, y = rng.normal(size=(64, 6)).astype("float32"), rng.integers(0, 4, 64)
    recorder = _run(document, [x], [y])
    assert recorder.info.metric_names == ["accuracy", "top2", "val_accuracy", "val_top2"]
    report = recorder.epochs[-1]
    assert set(report.metrics) == {"accuracy", "top2"}
    expected = _keras_evaluate(document, tmp_path, x, y)
    assert set(expected) == {"loss", "accuracy", "top2"}  # the saved file kept them
    for name in ("accuracy", "top2"):
        assert report.val_metrics[name] == pytest.approx(expected[name], abs=1e-6), name
    assert report.val_loss == pytest.approx(expected["loss"], rel=1e-4)


def test_regressor_reports_its_saved_mae_and_rmse_not_the_default(tmp_path):
    rng = np.random.default_rng(1)
    inputs = keras.Input((5,), name="x")
    out = keras.layers.Dense(2, name="values")(inputs)
    document = _compiled_file(tmp_path, keras.Model(inputs, out), "mse",
                              ["mae", keras.metrics.RootMeanSquaredError(name="rmse")])
    x = rng.normal(size=(48, 5)).astype("float32")
    y = rng.normal(size=(48, 2)).astype("float32")
    recorder = _run(document, [x], [y])
    report = recorder.epochs[-1]
    assert list(report.metrics) == ["mae", "rmse"]
    expected = _keras_evaluate(document, tmp_path, x, y)
    for name in ("mae", "rmse"):
        assert report.val_metrics[name] == pytest.approx(expected[name], rel=1e-5), name


def test_two_outputs_take_their_metrics_by_name_with_keras_prefixes(tmp_path):
    rng = np.random.default_rng(2)
    inputs = keras.Input((4,), name="x")
    hidden = keras.layers.Dense(6, activation="relu", name="hidden")(inputs)
    model = keras.Model(inputs, {"a": keras.layers.Dense(1, name="a")(hidden),
                                 "b": keras.layers.Dense(3, activation="softmax",
                                                         name="b")(hidden)})
    document = _compiled_file(tmp_path, model,
                              {"a": "mse", "b": "sparse_categorical_crossentropy"},
                              {"a": ["mae"], "b": ["accuracy"]})
    x = rng.normal(size=(32, 4)).astype("float32")
    ya, yb = rng.normal(size=(32, 1)).astype("float32"), rng.integers(0, 3, 32)
    outputs = [spec.name for spec in _outputs(document)]
    labels = {"a": ya, "b": yb}
    recorder = _run(document, [x], [labels[name] for name in outputs])
    assert sorted(recorder.epochs[-1].metrics) == ["a_mae", "b_accuracy"]
    expected = _keras_evaluate(document, tmp_path, x, labels)
    for name in ("a_mae", "b_accuracy"):
        assert recorder.epochs[-1].val_metrics[name] == pytest.approx(expected[name],
                                                                      abs=1e-6), name


def test_a_metric_that_cannot_be_rebuilt_is_named_and_the_default_used(tmp_path):
    def gizmo_metric(y_true, y_pred):
        return keras.ops.mean(y_pred)

    inputs = keras.Input((3,), name="x")
    document = _compiled_file(tmp_path, keras.Model(inputs, keras.layers.Dense(1)(inputs)),
                              "mse", [gizmo_metric])
    x = np.ones((16, 3), "float32")
    recorder = _run(document, [x], [np.zeros((16, 1), "float32")])
    assert "gizmo_metric" in recorder.info.losses[0] and "left out" in recorder.info.losses[0]
    assert list(recorder.epochs[-1].metrics) == ["mae"]


def _outputs(document):
    from freezestudio.core.model.signature import model_io

    return model_io(document).outputs
