"""Generic SavedModels (no Keras layers) export through their serving signature."""

import keras
import model_builders as mb
import numpy as np
import pytest
import tensorflow as tf

from freezestudio.core.data import Split, TrainingData
from freezestudio.core.errors import UserError
from freezestudio.core.export import available_formats, export_document
from freezestudio.core.files.loading import open_document
from freezestudio.core.files.saving import save_document
from freezestudio.core.training.config import TrainingConfig
from freezestudio.core.training.trainer import Trainer

SUFFIX = {"savedmodel": "", "tflite": ".tflite", "onnx": ".onnx", "frozen-graph": ".pb"}


@pytest.fixture(scope="module")
def document(tmp_path_factory):
    path = tmp_path_factory.mktemp("generic") / "scorer"
    module = mb.Scorer()
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
    return open_document(path)


def test_only_deployment_formats_are_offered(document, tmp_path):
    assert available_formats(document) == ["savedmodel", "tflite", "onnx", "frozen-graph"]
    with pytest.raises(UserError, match="generic SavedModel has no Keras layers"):
        export_document(document, "keras", tmp_path / "m.keras")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("fmt", list(SUFFIX))
def test_generic_savedmodel_exports_and_verifies(document, tmp_path, fmt):
    out = tmp_path / f"scorer{SUFFIX[fmt]}"
    report = export_document(document, fmt, out)
    assert report.verified and report.ok
    assert [c.output for c in report.checks] == ["scores", "total"]
    assert report.max_abs_diff < 1e-5
    if fmt == "savedmodel":
        signature = tf.saved_model.load(str(out)).signatures["serving_default"]
        features = np.ones((2, 4), "float32")
        expected = document.model.signatures["serving_default"](features=features)
        np.testing.assert_allclose(signature(features=features)["total"].numpy(),
                                   expected["total"].numpy(), atol=1e-6)


def test_a_keras_export_reopens_with_each_variable_once_and_its_freezes(tmp_path):
    """`model.export` tracks each weight twice in the object graph and leaves frozen
    layers' variables flagged trainable; its `trainable_variables` list is what holds."""
    inputs = keras.Input((6,), name="x")
    hidden = keras.layers.BatchNormalization(name="bn")(keras.layers.Dense(5, name="base")(inputs))
    model = keras.Model(inputs, keras.layers.Dense(3, name="head")(hidden))
    model.get_layer("base").trainable = False
    model.get_layer("bn").trainable = False
    model.export(str(tmp_path / "exported"), verbose=False)
    document = open_document(tmp_path / "exported")
    assert document.counts().params == model.count_params()
    assert document.counts().trainable == sum(int(np.prod(w.shape))
                                              for w in model.trainable_weights)
    rng = np.random.default_rng(0)
    data = TrainingData("arrays", Split([rng.normal(size=(64, 6)).astype("float32")],
                                        [rng.integers(0, 3, 64)]))
    result = Trainer(document, data, TrainingConfig(epochs=1, batch_size=16)).run()
    assert sorted(result.integrity.changed) == ["head:bias", "head:kernel"]
    # an edit is saved into the SavedModel's own lists too
    document.set_trainable([document.layer("base")], True)
    save_document(document, tmp_path / "edited")
    reloaded = tf.saved_model.load(str(tmp_path / "edited"))
    assert sorted(v.name for v in reloaded.trainable_variables) == [
        "base/bias:0", "base/kernel:0", "head/bias:0", "head/kernel:0"]
