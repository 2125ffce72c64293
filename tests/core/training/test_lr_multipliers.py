"""Per-layer learning-rate multipliers against TensorFlow: a multiplier scales the step
(not the gradient) for every optimizer, checked with a hand-written GradientTape loop."""

import keras
import model_builders as mb
import numpy as np
import pytest
import tensorflow as tf

from freezestudio.core.data import Split, TrainingData
from freezestudio.core.edits.plans import Plan, apply_plan
from freezestudio.core.errors import PlanError
from freezestudio.core.files.loading import open_document
from freezestudio.core.training.config import COMPLETED, TrainingConfig
from freezestudio.core.training.trainer import Trainer

LR = 0.01


def _data(n=32, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4)).astype("float32")
    return x, rng.normal(size=(n, 2)).astype("float32")


def _values(document):
    return {w.id: w.variable.numpy().copy() for w in document.weights}


def _train(path, multipliers, optimizer, epochs=1, trainable=()):
    document = open_document(path)
    apply_plan(document, Plan.from_dict({
        "freezestudio_plan": 1, "trainable": [{"match": m, "value": v} for m, v in trainable],
        "lr_multipliers": [{"match": m, "value": v} for m, v in multipliers]}))
    before = _values(document)
    x, y = _data()
    config = TrainingConfig(epochs=epochs, batch_size=len(x), learning_rate=LR,
                            optimizer=optimizer, shuffle=False, metrics=False,
                            cache_features="off", loss="mean_squared_error")
    result = Trainer(document, TrainingData("arrays", Split([x], [y])), config).run()
    assert result.status == COMPLETED, result.message
    return before, _values(document), result


def _hand_loop(path, multipliers: dict, optimizer: str, steps: int):
    """The same run written by hand: one Keras optimizer per multiplier."""
    model = keras.models.load_model(path)
    make = {"sgd": lambda lr: keras.optimizers.SGD(lr, momentum=0.9),
            "adam": keras.optimizers.Adam,
            "adamw": lambda lr: keras.optimizers.AdamW(lr, weight_decay=0.004),
            "rmsprop": keras.optimizers.RMSprop}[optimizer]
    groups = {}
    for layer in model.layers:
        for variable in layer.trainable_weights:
            groups.setdefault(multipliers.get(layer.name, 1.0), []).append(variable)
    optimizers = {m: make(LR * m) for m in groups}
    x, y = _data()
    for _ in range(steps):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(keras.losses.mean_squared_error(y, model(x, training=True)))
        variables = [v for m in groups for v in groups[m]]
        grads = dict(zip([id(v) for v in variables], tape.gradient(loss, variables),
                         strict=True))
        for m, group in groups.items():
            optimizers[m].apply([grads[id(v)] for v in group], group)
    return {f"{layer.name}:{w.name}": w.numpy() for layer in model.layers
            for w in layer.weights}


@pytest.fixture
def saved_mlp(tmp_path):
    path = tmp_path / "mlp.keras"
    mb.mlp().save(path)
    return path


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_a_multiplier_of_half_moves_the_layer_exactly_half_as_far(saved_mlp, optimizer):
    before, one, _ = _train(saved_mlp, [], optimizer)
    _, half, result = _train(saved_mlp, [("dense_1", 0.5)], optimizer)
    assert "x0.5 (2 weights)" in result.info.optimizer
    for weight_id in ("dense_1:kernel", "dense_1:bias"):
        step_one = one[weight_id] - before[weight_id]
        step_half = half[weight_id] - before[weight_id]
        assert np.abs(step_one).min() > 0
        # exact up to the rounding of `weight - step` (a few ulp of the weight)
        tolerance = 4 * np.finfo(np.float32).eps * np.abs(before[weight_id]).max()
        np.testing.assert_allclose(step_half, step_one / 2, rtol=0, atol=tolerance)
    for weight_id in ("dense:kernel", "dense_2:kernel", "dense_2:bias"):  # untouched: same bits
        assert half[weight_id].tobytes() == one[weight_id].tobytes()
    by_hand = _hand_loop(saved_mlp, {"dense_1": 0.5}, optimizer, steps=1)
    for weight_id, value in by_hand.items():
        np.testing.assert_allclose(half[weight_id], value, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("optimizer", ["adamw", "rmsprop"])
def test_groups_follow_a_hand_written_loop_over_several_steps(saved_mlp, optimizer):
    """Several groups, several steps: each group's state and iteration count evolve as
    its own optimizer would (AdamW's decay at the group's rate)."""
    _, trained, _ = _train(saved_mlp, [("*", 0.25), ("dense_2", 2.0)], optimizer, epochs=3)
    by_hand = _hand_loop(saved_mlp, {"dense": 0.25, "dense_1": 0.25, "dense_2": 2.0},
                         optimizer, steps=3)
    for weight_id, value in by_hand.items():
        np.testing.assert_allclose(trained[weight_id], value, rtol=1e-5, atol=1e-6)


def test_a_multiplier_on_a_frozen_weight_changes_nothing_and_is_said(saved_mlp):
    before, after, result = _train(saved_mlp, [("dense", 0.1), ("dense_2:bias", 3.0)],
                                   "adamw", trainable=[("dense", False)])
    notes = " ".join(result.info.notes)
    assert "multipliers on 2 weight(s) that receive no gradient change nothing" in notes
    assert "dense:kernel" in notes and "dense:bias" in notes
    assert after["dense:kernel"].tobytes() == before["dense:kernel"].tobytes()
    assert result.integrity.ok


def test_a_multiplier_rule_that_matches_nothing_is_an_error(saved_mlp):
    document = open_document(saved_mlp)
    with pytest.raises(PlanError, match="'head' matches no layer or weight"):
        apply_plan(document, Plan.from_dict({"freezestudio_plan": 1, "lr_multipliers": [
            {"match": "head", "value": 0.5}]}))
    assert not document.fine_tuning
