"""`jit_compile`: Keras's own rule, XLA's results equal the graph step's on CPU, and the
fallback of a model XLA cannot compile."""

import keras
import model_builders as mb
import numpy as np
import pytest

from freezestudio.core.data import Split, TrainingData
from freezestudio.core.errors import UserError
from freezestudio.core.files.loading import open_document
from freezestudio.core.training.config import COMPLETED, TrainingConfig
from freezestudio.core.training.trainer import Trainer
from freezestudio.core.training.xla import resolve_jit_compile, xla_failure_reason


def _data(n=48, features=6, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, features)).astype("float32")
    return TrainingData("arrays", Split([x], [rng.integers(0, classes, n)]))


def _train(model, tmp_path, name, jit, data):
    path = tmp_path / f"{name}.keras"
    model.save(path)
    document = open_document(path)
    config = TrainingConfig(epochs=2, batch_size=16, seed=3, cache_features="off",
                            jit_compile=jit)
    result = Trainer(document, data, config).run()
    assert result.status == COMPLETED, result.message
    return result, {w.id: w.variable.numpy() for w in document.weights}


def test_jit_on_gives_the_same_losses_and_weights_as_off_on_cpu(tmp_path):
    keras.utils.set_random_seed(0)
    model, data = mb.gradient_norms_model(), _data()
    off, off_weights = _train(model, tmp_path, "off", "off", data)
    on, on_weights = _train(model, tmp_path, "on", "on", data)
    assert on.info.xla == "XLA on (--jit-compile on)"
    assert off.info.xla == "XLA off (--jit-compile off)"
    assert on.notes == []
    assert on.final_loss == pytest.approx(off.final_loss, rel=1e-5)
    assert [e.loss for e in on.history] == pytest.approx([e.loss for e in off.history],
                                                         rel=1e-5)
    assert on.integrity.changed == off.integrity.changed
    for key, value in off_weights.items():
        np.testing.assert_allclose(on_weights[key], value, rtol=1e-4, atol=1e-6)


def test_a_model_xla_cannot_compile_runs_without_it_and_says_so(tmp_path):
    keras.utils.set_random_seed(0)
    model, data = mb.pre_middle_post(mb.HostRoundTrip(name="host")), _data(n=32, classes=2)
    off, off_weights = _train(model, tmp_path, "off", "off", data)
    on, on_weights = _train(model, tmp_path, "on", "on", data)
    assert len(on.notes) == 1 and on.notes[0].startswith(
        "XLA could not compile the step, it ran without XLA:"), on.notes
    assert "PyFunc" in on.notes[0]
    assert on.steps == off.steps == 4
    assert on.final_loss == pytest.approx(off.final_loss, rel=1e-6)
    for key, value in off_weights.items():
        np.testing.assert_allclose(on_weights[key], value, rtol=1e-6, atol=1e-7)


def _keras_jit(model, mode):
    """What Keras's own compile decides (the oracle)."""
    model.compile("adam", "mse", jit_compile=mode)
    return model.jit_compile


def test_the_decision_is_keras_own_on_this_machine():
    plain = mb.gradient_norms_model()
    augmenting = mb.single_layer_model(keras.layers.RandomZoom(0.1, name="zoom"),
                                       shape=(8, 8, 1))
    for model in (plain, augmenting):
        for mode, flag in (("auto", "auto"), ("on", True)):
            decision = resolve_jit_compile(mode, model, distributed=False)
            assert decision.enabled == bool(_keras_jit(model, flag)), (model.name, mode)
    assert resolve_jit_compile("auto", plain, False).describe() == \
        "XLA off (auto: no GPU, as Keras's fit)"
    refused = resolve_jit_compile("on", augmenting, False)
    assert not refused.enabled and "'zoom' (RandomZoom) does not support XLA" in refused.reason
    assert resolve_jit_compile("auto", plain, True).describe() == \
        "XLA off (auto: a distribute strategy runs the step, as Keras's fit)"
    assert not resolve_jit_compile("off", plain, False).enabled


def test_jit_on_under_a_strategy_is_a_user_error():
    with pytest.raises(UserError, match="--jit-compile on cannot run distributed"):
        resolve_jit_compile("on", mb.gradient_norms_model(), distributed=True)
    with pytest.raises(UserError, match="unknown jit-compile 'yes'"):
        TrainingConfig(jit_compile="yes").validate()


def test_the_fallback_note_names_the_unsupported_operation_however_long_the_graph_name():
    import tensorflow as tf

    for trace in range(3):  # each trace gets a new, longer-numbered graph name
        @tf.function(jit_compile=True)
        def host_call(x):
            return tf.numpy_function(lambda a: a * 2, [x], tf.float32)

        with pytest.raises(tf.errors.InvalidArgumentError) as caught:
            host_call(tf.ones(3 + trace))
        assert xla_failure_reason(caught.value) == "unsupported operations: PyFunc"
