"""Freeze semantics of the document, checked against what Keras itself trains."""

import random

import keras
import model_builders as mb
import numpy as np
import pytest

from freezestudio.core.files.loading import open_document
from freezestudio.core.model.changes import ChangeKind, DocumentChange
from freezestudio.core.model.document import PARTIAL


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("freeze")
    paths = {}
    for name in ("sequential_with_backbone", "nested_sequential", "mlp", "custom_layer_model"):
        paths[name] = folder / f"{name}.keras"
        getattr(mb, name)().save(paths[name])
    return paths


def assert_keras_agrees(document):
    """Keras's trainable set (variable identities) is exactly the document's."""
    model = document.model
    assert {id(v) for v in model.trainable_weights} == {
        id(w.variable) for w in document.trainable_weights()}
    assert mb.size(model.trainable_weights) == document.counts().trainable
    for node in document.root.walk():
        assert mb.layer_params(node.layer)[1] == document.counts(node).trainable, node.path


def test_freeze_container_freezes_everything_inside(files):
    document = open_document(files["sequential_with_backbone"])
    backbone = document.layer("backbone")
    document.set_trainable([backbone], False)
    assert document.trainable_state(backbone) is False
    for node in backbone.walk():
        assert document.trainable_state(node) is False, node.path
        assert node.layer.trainable is False, node.path
        for weight in node.weights:
            assert not document.is_weight_trainable(weight)
    assert document.trainable_state(document.layer("head")) is True
    assert document.trainable_state(document.root) == PARTIAL
    assert_keras_agrees(document)
    head = document.model.get_layer("head")
    assert {id(v) for v in document.model.trainable_weights} == {
        id(head.kernel), id(head.bias)}


def test_unfreeze_one_layer_inside_frozen_container(files):
    document = open_document(files["sequential_with_backbone"])
    document.set_trainable([document.layer("backbone")], False)
    document.set_trainable([document.layer("backbone/conv")], True)
    assert document.trainable_state(document.layer("backbone")) == PARTIAL
    assert document.trainable_state(document.layer("backbone/conv")) is True
    assert document.trainable_state(document.layer("backbone/bn")) is False
    backbone = document.model.get_layer("backbone")
    assert backbone.trainable is True  # something inside trains
    assert backbone.get_layer("bn").trainable is False
    conv = backbone.get_layer("conv")
    assert {id(v) for v in backbone.trainable_weights} == {id(conv.kernel), id(conv.bias)}
    assert_keras_agrees(document)


def test_per_weight_freeze_of_bias_next_to_trainable_kernel(files):
    document = open_document(files["mlp"])
    model = document.model
    document.set_trainable([document.weight("dense_1:bias")], False)
    layer = model.get_layer("dense_1")
    assert document.trainable_state(document.layer("dense_1")) == PARTIAL
    assert document.is_weight_trainable(document.weight("dense_1:kernel"))
    assert layer.trainable is True
    assert layer.kernel.trainable and not layer.bias.trainable
    assert_keras_agrees(document)
    # Training for real moves the kernel and leaves the frozen bias bit for bit.
    layer.bias.assign(np.full(layer.bias.shape, 0.5, "float32"))
    kernel_before = layer.kernel.numpy().copy()
    bias_before = layer.bias.numpy().copy()
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    x = np.random.default_rng(0).standard_normal((16, 4)).astype("float32")
    model.fit(x, np.ones((16, 2), "float32"), epochs=1, batch_size=16, verbose=0)
    assert not np.allclose(layer.kernel.numpy(), kernel_before)
    np.testing.assert_array_equal(layer.bias.numpy(), bias_before)


def _bn_statistics_move(model, bn_layer):
    before = bn_layer.moving_mean.numpy().copy()
    x = np.random.default_rng(1).normal(3.0, 2.0, (8, 8, 8, 3)).astype("float32")
    model(x, training=True)
    return not np.allclose(bn_layer.moving_mean.numpy(), before)


def test_frozen_batchnorm_runs_in_inference_mode(files):
    document = open_document(files["sequential_with_backbone"])
    bn = document.model.get_layer("backbone").get_layer("bn")
    assert _bn_statistics_move(document.model, bn)  # trainable BN updates its statistics
    document.set_trainable([document.layer("backbone/bn")], False)
    assert bn.trainable is False
    assert not _bn_statistics_move(document.model, bn)
    document.set_trainable([document.layer("backbone/bn")], True)
    assert bn.trainable is True
    assert _bn_statistics_move(document.model, bn)


def test_batchnorm_without_gamma_beta_keeps_its_flag(tmp_path):
    inputs = keras.Input((4,))
    x = keras.layers.Dense(3, name="dense")(inputs)
    x = keras.layers.BatchNormalization(center=False, scale=False, name="bn")(x)
    outputs = keras.layers.Dense(1, name="out")(x)
    keras.Model(inputs, outputs).save(tmp_path / "bn.keras")
    document = open_document(tmp_path / "bn.keras")
    bn = document.model.get_layer("bn")
    assert bn.trainable is True
    document.set_trainable([document.layer("out")], False)  # an unrelated edit
    assert bn.trainable is True, "BatchNorm silently switched to inference mode"
    assert document.trainable_state(document.layer("bn")) is True


def test_setting_true_on_already_true_container_unfreezes_children(tmp_path):
    model = mb.nested_sequential()
    model.get_layer("block").get_layer("d1").trainable = False  # block itself stays True
    model.save(tmp_path / "m.keras")
    document = open_document(tmp_path / "m.keras")
    block = document.layer("block")
    assert document.model.get_layer("block").trainable is True
    assert document.trainable_state(block) == PARTIAL
    assert document.trainable_state(document.layer("block/d1")) is False
    assert_keras_agrees(document)
    document.set_trainable([block], True)
    assert document.trainable_state(block) is True
    d1 = document.model.get_layer("block").get_layer("d1")
    assert d1.trainable is True
    assert {id(d1.kernel), id(d1.bias)} <= {id(v) for v in document.model.trainable_weights}
    assert_keras_agrees(document)


def test_nested_sequential_saved_frozen_reloads_frozen(tmp_path):
    model = mb.nested_sequential()
    model.get_layer("block").trainable = False
    model.save(tmp_path / "m.keras")
    document = open_document(tmp_path / "m.keras")
    block = document.layer("block")
    assert document.trainable_state(block) is False
    assert all(document.trainable_state(c) is False for c in block.children)
    assert document.counts(block).trainable == 0
    assert_keras_agrees(document)
    # Unfreezing it works although Keras reloaded the container flag as True.
    document.set_trainable([block], True)
    assert document.counts(block).trainable == document.counts(block).params == 55
    assert_keras_agrees(document)


def test_edit_raises_needs_recompile_and_notifies(files):
    document = open_document(files["mlp"])
    calls, changes = [], []
    document.add_listener(lambda change: calls.append(document.counts().trainable))
    document.add_listener(changes.append)
    document.mark_compiled()  # as after a compile by the training engine
    document.mark_unmodified()
    document.set_trainable([document.layer("dense")], False)
    assert document.needs_recompile is True
    assert document.modified is True
    assert calls == [document.counts().trainable] and calls[0] == (6 * 5 + 5) + (5 * 2 + 2)
    assert changes == [DocumentChange(ChangeKind.TRAINABLE, (document.layer("dense"),))]


def test_custom_layer_non_trainable_weight_stays_out_when_unfrozen(files):
    document = open_document(files["custom_layer_model"])
    node = document.layer("scaled")
    document.set_trainable([node], False)
    assert document.trainable_state(node) is False
    document.set_trainable([node], True)
    assert not document.is_weight_trainable(document.weight("scaled:scale"))
    assert not document.model.get_layer("scaled").scale.trainable
    assert_keras_agrees(document)


def _random_edit(document, rng):
    layers = [p for p in document.layer_paths if p]
    kind = rng.choice(["weight", "layer", "container"])
    if kind == "weight":
        node = document.weight(rng.choice(document.weight_ids))
    elif kind == "container":
        node = document.layer(rng.choice(
            [p for p in layers if document.layer(p).is_container]))
    else:
        node = document.layer(rng.choice(layers))
    document.set_trainable([node], rng.random() < 0.5)


def _state(document):
    return ({p: document.trainable_state(document.layer(p)) for p in document.layer_paths},
            {w: document.is_weight_trainable(document.weight(w)) for w in document.weight_ids},
            mb.trainable_indices(document.model),
            tuple(layer.trainable for layer in mb.keras_layer_paths(document.model).values()))


@pytest.mark.parametrize("name", ["sequential_with_backbone", "nested_sequential"])
def test_snapshot_restore_returns_exact_state(files, name):
    document = open_document(files[name])
    rng = random.Random(7)
    for _ in range(5):
        _random_edit(document, rng)
    document.set_trainable([document.weights[0]], False)
    document.set_trainable([document.weights[-1]], True)
    before = _state(document)
    assert False in before[1].values() and True in before[1].values()  # a mixed state
    snapshot = document.snapshot()
    for _ in range(8):
        _random_edit(document, rng)
    document.set_trainable([document.weights[-1]], False)
    assert _state(document) != before  # the edits did change something
    document.restore(snapshot)
    assert _state(document) == before
    assert_keras_agrees(document)


@pytest.mark.parametrize("seed", range(3))
def test_random_edits_keep_keras_in_agreement(files, seed):
    document = open_document(files["sequential_with_backbone"])
    rng = random.Random(seed)
    for _ in range(12):
        _random_edit(document, rng)
        assert_keras_agrees(document)
        for node in document.root.walk():
            states = {document.is_weight_trainable(w)
                      for w in node.all_weights() if w.freezable}
            if len(states) == 2:
                assert document.trainable_state(node) == PARTIAL
            elif states:
                assert document.trainable_state(node) is states.pop()
