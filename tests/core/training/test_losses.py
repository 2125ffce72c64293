"""The loss a run uses when the model was saved compiled: what of the saved loss is used,
and what is said about the rest (real Keras compile configs, saved and reopened)."""

import keras
import model_builders as mb
import numpy as np

from freezestudio.core.data import Split, TrainingData
from freezestudio.core.files.loading import open_document
from freezestudio.core.model.signature import model_io
from freezestudio.core.training.setup import preview_losses

RNG = np.random.default_rng(0)
X = RNG.normal(size=(32, 4)).astype("float32")


def compiled(tmp_path, outputs: dict, **compile_args):
    model = mb.dict_outputs(outputs)
    model.compile(optimizer="adam", **compile_args)
    model.save(tmp_path / "m.keras")
    return open_document(tmp_path / "m.keras")


def reasons(document, labels: dict):
    """The described loss per output, in the model's output order."""
    order = [spec.name for spec in model_io(document).outputs]
    data = TrainingData("arrays", Split([X], [labels[name] for name in order]))
    return [choice.describe() for choice in preview_losses(document, data)]


def test_a_saved_loss_object_is_used_by_its_class(tmp_path):
    document = compiled(tmp_path, {"value": keras.layers.Dense(1, name="value")},
                        loss=keras.losses.Huber())
    assert reasons(document, {"value": X[:, :1]}) == ["huber: the model's saved compile config"]


def test_saved_loss_options_and_weights_it_does_not_apply_are_said(tmp_path):
    document = compiled(
        tmp_path, {"value": keras.layers.Dense(1, name="value"),
                   "kind": keras.layers.Dense(3, activation="softmax", name="kind")},
        loss={"value": "mae", "kind": keras.losses.CategoricalCrossentropy(
            label_smoothing=0.1)},
        loss_weights={"value": 10.0, "kind": 1.0})
    onehot = np.eye(3, dtype="float32")[RNG.integers(0, 3, 32)]
    said = dict(zip([s.name for s in model_io(document).outputs],
                    reasons(document, {"value": X[:, :1], "kind": onehot}), strict=True))
    weights = '; the saved loss_weights {"value": 10.0, "kind": 1.0} are not applied'
    assert said == {
        "value": "mean_absolute_error: the model's saved compile config" + weights,
        "kind": "categorical_crossentropy: the model's saved compile config; its "
                "label_smoothing=0.1 is not applied (Keras's default is used)" + weights}


def test_a_saved_loss_it_cannot_use_is_said_beside_the_guess(tmp_path):
    @keras.saving.register_keras_serializable(package="losstest")
    def squared_log(y_true, y_pred):
        return keras.ops.mean(keras.ops.log1p(keras.ops.square(y_true - y_pred)), axis=-1)

    document = compiled(tmp_path, {"value": keras.layers.Dense(1, name="value")},
                        loss=squared_log)
    [said] = reasons(document, {"value": X[:, :1]})
    assert said.startswith("mean_squared_error: linear output")
    assert "the saved loss" in said and "is not one FreezeStudio can use (see --loss)" in said
