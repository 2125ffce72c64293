"""LoRA adapters with the fine-tuning strategies: a learning-rate multiplier on an adapted
layer scales its adapter's step exactly (a hand-written TensorFlow forward pass and tape
as the oracle), and schedule stages that unfreeze layers keep the adapters training and
the base kernels frozen, bit for bit."""

import model_builders as mb
import numpy as np
import pytest
import tensorflow as tf

from freezestudio.core.data import Split, TrainingData
from freezestudio.core.edits.plans import Plan, apply_plan
from freezestudio.core.files.loading import open_document
from freezestudio.core.files.saving import save_document
from freezestudio.core.model.document import Document
from freezestudio.core.model.tree import build_keras_tree
from freezestudio.core.training.config import COMPLETED, Reporter, TrainingConfig
from freezestudio.core.training.trainer import Trainer

LR = 0.05
RANK, ALPHA = 2, 4.0
LORA = {"freezestudio_plan": 1,
        "trainable": [{"match": "*", "value": False}],
        "lora": [{"match": "dense", "rank": RANK}, {"match": "dense_1", "rank": RANK,
                                                     "alpha": ALPHA}]}


def _data(n=16, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 4)).astype("float32"), rng.normal(size=(n, 2)).astype("float32")


def _values(document):
    return {w.id: w.variable.numpy().copy() for w in document.weights}


@pytest.fixture
def live_lora_file(tmp_path):
    """The MLP with adapters on dense and dense_1 whose B is not zero (as after some
    training: both A and B receive gradient), saved with the adapters' own values."""
    model = mb.mlp()
    document = Document(build_keras_tree(model), model, "memory.keras", "keras")
    apply_plan(document, Plan.from_dict(LORA))
    rng = np.random.default_rng(1)
    for adapter in document.adapters():
        b = adapter.layer.lora_kernel_b
        b.assign(rng.normal(scale=0.5, size=b.shape).astype("float32"))
    path = tmp_path / "lora_mlp.keras"
    save_document(document, path)
    return path


def _train(path, plan: dict, epochs=1, optimizer="sgd", reporter=None):
    document = open_document(path)
    apply_plan(document, Plan.from_dict({"freezestudio_plan": 1, **plan}))
    before = _values(document)
    x, y = _data()
    config = TrainingConfig(epochs=epochs, batch_size=len(x), learning_rate=LR,
                            optimizer=optimizer, momentum=0.0, shuffle=False, metrics=False,
                            cache_features="off", loss="mean_squared_error")
    result = Trainer(document, TrainingData("arrays", Split([x], [y])), config).run(reporter)
    assert result.status == COMPLETED, result.message
    return document, before, _values(document), result


def _oracle_gradients(values: dict) -> dict:
    """d loss / d (dense_1's A and B) of the linear MLP written by hand in TensorFlow
    (`x W0' + b0`, then `W1 + alpha/rank A B`, then `W2`), from the stored values."""
    x, y = _data()
    v = {key: tf.Variable(value) for key, value in values.items()}

    def adapted(name, alpha):
        return v[f"{name}:kernel"] + (alpha / RANK) * tf.matmul(
            v[f"{name}:lora_kernel_a"], v[f"{name}:lora_kernel_b"])

    watched = [v["dense_1:lora_kernel_a"], v["dense_1:lora_kernel_b"]]
    with tf.GradientTape() as tape:
        h = tf.matmul(x, adapted("dense", RANK)) + v["dense:bias"]
        h = tf.matmul(h, adapted("dense_1", ALPHA)) + v["dense_1:bias"]
        out = tf.matmul(h, v["dense_2:kernel"]) + v["dense_2:bias"]
        loss = tf.reduce_mean(tf.reduce_mean(tf.square(out - y), axis=-1))
    grads = tape.gradient(loss, watched)
    return {"dense_1:lora_kernel_a": grads[0].numpy(), "dense_1:lora_kernel_b": grads[1].numpy()}


def test_a_multiplier_on_an_adapted_layer_scales_its_adapter_step_exactly(live_lora_file):
    _, before, one, _ = _train(live_lora_file, {})
    _, before_half, half, result = _train(
        live_lora_file, {"lr_multipliers": [{"match": "dense_1", "value": 0.5}]})
    assert all(before_half[k].tobytes() == before[k].tobytes() for k in before)  # same start
    assert "x0.5 (2 weights)" in result.info.optimizer  # dense_1's A and B; its kernel is fixed
    grads = _oracle_gradients(before)
    for key, grad in grads.items():
        step_one, step_half = one[key] - before[key], half[key] - before[key]
        assert np.abs(step_one).min() > 0
        # exact up to the rounding of `weight - step` (a few ulp of the weight)
        tolerance = 4 * np.finfo(np.float32).eps * np.abs(before[key]).max()
        np.testing.assert_allclose(step_half, 0.5 * step_one, rtol=0, atol=tolerance)
        np.testing.assert_allclose(step_one, -LR * grad, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(step_half, -0.5 * LR * grad, rtol=1e-4, atol=1e-6)
    for key in ("dense:lora_kernel_a", "dense:lora_kernel_b"):  # other adapter: multiplier 1
        assert half[key].tobytes() == one[key].tobytes()
    for key in ("dense:kernel", "dense_1:kernel", "dense_2:kernel", "dense_1:bias"):
        assert half[key].tobytes() == before[key].tobytes()  # frozen / fixed base kernels


class EpochValues(Reporter):
    def __init__(self):
        self.document, self.after = None, []

    def epoch_finished(self, report):
        self.after.append(_values(self.document))


@pytest.mark.parametrize("unfreeze", ["dense_1", "*"])
def test_a_stage_that_unfreezes_keeps_adapters_training_and_base_kernels_frozen(
        live_lora_file, unfreeze):
    plan = {"schedule": [{"from_epoch": 2, "trainable": [{"match": unfreeze, "value": True}],
                          "lr_multipliers": [{"match": "dense_1", "value": 0.5}]}]}
    recorder = EpochValues()
    document = open_document(live_lora_file)
    recorder.document = document
    apply_plan(document, Plan.from_dict({"freezestudio_plan": 1, **plan}))
    before = _values(document)
    x, y = _data()
    config = TrainingConfig(epochs=3, batch_size=len(x), learning_rate=LR, optimizer="adam",
                            shuffle=False, metrics=False, cache_features="off",
                            loss="mean_squared_error")
    result = Trainer(document, TrainingData("arrays", Split([x], [y])), config).run(recorder)
    assert result.status == COMPLETED, result.message
    epochs = [before, *recorder.after]
    for key in ("dense:kernel", "dense_1:kernel"):  # adapted: fixed in every stage
        assert all(e[key].tobytes() == before[key].tobytes() for e in epochs), key
    for key in ("dense:lora_kernel_a", "dense:lora_kernel_b", "dense_1:lora_kernel_a",
                "dense_1:lora_kernel_b"):  # the adapters train in both stages
        steps = zip(epochs, epochs[1:], strict=False)
        assert all(not np.array_equal(a[key], b[key]) for a, b in steps), key
    assert recorder.after[0]["dense_1:bias"].tobytes() == before["dense_1:bias"].tobytes()
    assert not np.array_equal(recorder.after[1]["dense_1:bias"], before["dense_1:bias"])
    head_moves = unfreeze == "*"
    assert np.array_equal(recorder.after[2]["dense_2:kernel"], before["dense_2:kernel"]) \
        != head_moves
    assert result.integrity.ok and not result.integrity.frozen_changed
    assert [c.id for c in result.integrity.adapters if c.moved] == ["dense:kernel",
                                                                    "dense_1:kernel"]
    assert [a.id for a in document.adapters()] == ["dense:kernel", "dense_1:kernel"]
