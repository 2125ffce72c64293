"""Opening every supported format: tf.keras 2.x SavedModel and .h5, Keras 3 .h5, and a
generic SavedModel written from a plain `tf.Module`."""

import model_builders as mb
import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from freezestudio.core.files import formats
from freezestudio.core.files.loading import open_document
from freezestudio.core.files.saving import save_document
from freezestudio.core.model.document import PARTIAL

# tf_keras warns about legacy .h5 and input_shape: expected here.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def legacy_paths(model, prefix=""):
    found = {}
    for layer in model.layers:
        if isinstance(layer, tf_keras.layers.InputLayer):
            continue
        path = f"{prefix}/{layer.name}" if prefix else layer.name
        found[path] = layer
        if isinstance(layer, tf_keras.Model):
            found.update(legacy_paths(layer, path))
    return found


def size(variables):
    return sum(int(np.prod(v.shape)) for v in variables)


def check_against_tf_keras(document, legacy):
    paths = {p for p in document.layer_paths if p
             and document.layer(p).class_name != "InputLayer"}
    assert paths == set(legacy_paths(legacy))
    for path, layer in legacy_paths(legacy).items():
        node = document.layer(path)
        assert document.counts(node).params == size(layer.weights), path
        assert document.counts(node).trainable == size(layer.trainable_weights), path
    assert document.counts().params == legacy.count_params()
    assert document.counts().trainable == size(legacy.trainable_weights)
    shape = (3, *legacy.inputs[0].shape[1:])
    x = np.random.default_rng(0).standard_normal(shape).astype("float32")
    np.testing.assert_allclose(np.asarray(document.model(x, training=False)),
                               legacy(x, training=False).numpy(),
                               rtol=1e-4, atol=1e-5)


@pytest.fixture(scope="module")
def legacy_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("legacy")
    files = {}
    for name, build in (("flat", mb.tf_keras_flat), ("nested", mb.tf_keras_nested)):
        model = build()
        model.save(folder / f"{name}_savedmodel")
        model.save(folder / f"{name}.h5")
        files[name] = model
    return folder, files


def test_tf_keras_savedmodel_flat_tree_recovered(legacy_files, tmp_path):
    folder, models = legacy_files
    path = folder / "flat_savedmodel"
    assert (path / "keras_metadata.pb").is_file()
    document = open_document(path)
    assert document.source_format == formats.TF_KERAS_SAVEDMODEL
    check_against_tf_keras(document, models["flat"])
    assert document.trainable_state(document.layer("d1")) is False
    assert document.trainable_state(document.root) == PARTIAL
    # Opening the saved_model.pb file itself means the directory.
    assert open_document(path / "saved_model.pb").counts() == document.counts()
    # Edited and saved as .keras, it reopens with the edit.
    document.set_trainable([document.layer("d2")], False)
    save_document(document, tmp_path / "converted.keras")
    reopened = open_document(tmp_path / "converted.keras")
    assert reopened.counts().trainable == document.counts().trainable
    assert reopened.trainable_state(reopened.layer("d2")) is False


def test_tf_keras_h5_flat(legacy_files):
    folder, models = legacy_files
    document = open_document(folder / "flat.h5")
    assert document.source_format == formats.H5
    check_against_tf_keras(document, models["flat"])
    assert document.trainable_state(document.layer("d1")) is False


def test_tf_keras_savedmodel_nested_backbone(legacy_files):
    folder, models = legacy_files
    document = open_document(folder / "nested_savedmodel")
    check_against_tf_keras(document, models["nested"])
    assert document.trainable_state(document.layer("backbone")) is False


def test_tf_keras_h5_nested_backbone(legacy_files):
    folder, models = legacy_files
    document = open_document(folder / "nested.h5")
    check_against_tf_keras(document, models["nested"])


@pytest.mark.parametrize("build", ["functional", "sequential"])
def test_tf_keras_mobilenet_transfer_h5(tmp_path, build):
    legacy = (mb.tf_keras_mobilenet_transfer if build == "functional"
              else mb.tf_keras_sequential_transfer)()
    legacy.save(tmp_path / "transfer.h5")
    document = open_document(tmp_path / "transfer.h5")
    check_against_tf_keras(document, legacy)
    base = next(p for p in document.layer_paths if p.startswith("mobilenetv2"))
    assert document.trainable_state(document.layer(base)) is False
    assert document.trainable_state(document.layer("head")) is True
    # The tf.keras-only option Keras 3 lacks is dropped, and the user is told.
    assert any("groups" in note for note in document.notes), document.notes
    # base(x, training=False) kept BatchNorm in inference mode in tf.keras, not in Keras 3
    told = [note for note in document.notes if "with training=False" in note]
    assert told == ([f"tf.keras called '{base}' with training=False, which kept its "
                     "BatchNormalization layers in inference mode even when unfrozen; Keras 3 "
                     "does not: keep those BatchNormalization layers frozen to get the same "
                     "fine-tuning"] if build == "functional" else [])


@pytest.mark.slow
def test_tf_keras_mobilenet_transfer_savedmodel(tmp_path):
    legacy = mb.tf_keras_mobilenet_transfer()
    legacy.save(tmp_path / "transfer")
    document = open_document(tmp_path / "transfer")
    check_against_tf_keras(document, legacy)


@pytest.mark.parametrize("kind", ["h5", "savedmodel"])
def test_tf_keras_augmentation_sequential(tmp_path, kind):
    legacy = mb.tf_keras_augmentation()
    path = tmp_path / ("aug.h5" if kind == "h5" else "aug")
    legacy.save(path)
    document = open_document(path)
    check_against_tf_keras(document, legacy)


@pytest.mark.parametrize("kind", ["h5", "savedmodel"])
def test_tf_keras_sequential_starting_with_functional(tmp_path, kind):
    legacy = mb.tf_keras_sequential_of_functional()
    legacy.build((None, 4))
    path = tmp_path / ("seq.h5" if kind == "h5" else "seq")
    legacy.save(path)
    document = open_document(path)
    check_against_tf_keras(document, legacy)


def test_tf_keras_explicit_list_of_one_output_opens(tmp_path):
    """`Model(inputs=[x], outputs=[y])`: tf.keras treats the lists of one as the tensors."""
    inputs = tf_keras.Input((4,), name="x")
    inner = tf_keras.Model([inputs], [tf_keras.layers.Dense(3, name="d")(inputs)],
                           name="inner")
    outer_in = tf_keras.Input((4,), name="outer_x")
    legacy = tf_keras.Model(outer_in, tf_keras.layers.Dense(2, name="head")(inner(outer_in)))
    legacy.save(tmp_path / "lists.h5")
    check_against_tf_keras(open_document(tmp_path / "lists.h5"), legacy)


def test_keras3_h5_nested_model(tmp_path):
    import keras

    model = mb.sequential_with_backbone()
    model.get_layer("backbone").get_layer("bn").trainable = False
    model.save(tmp_path / "k3.h5")
    document = open_document(tmp_path / "k3.h5")
    assert document.source_format == formats.H5
    assert set(document.layer_paths) == set(mb.keras_layer_paths(model)) | {""}
    assert document.counts().params == model.count_params()
    assert document.counts().trainable == mb.size(model.trainable_weights)
    assert document.trainable_state(document.layer("backbone")) == PARTIAL
    assert document.trainable_state(document.layer("backbone/bn")) is False
    x = mb.sample_input(model)
    np.testing.assert_allclose(np.asarray(document.model(x)), np.asarray(model(x)), atol=1e-6)
    assert isinstance(document.model, keras.Model)


@pytest.fixture(scope="module")
def generic(tmp_path_factory):
    path = tmp_path_factory.mktemp("generic") / "net"
    net = mb.ScopedNet()
    tf.saved_model.save(net, str(path), signatures={"serving_default": net.__call__})
    assert not (path / "keras_metadata.pb").exists()
    x = np.random.default_rng(1).standard_normal((5, 3)).astype("float32")
    return path, x, net(tf.constant(x))["y"].numpy()


def test_generic_savedmodel_tree_of_scopes(generic):
    path, _, _ = generic
    document = open_document(path)
    assert document.source_format == formats.SAVEDMODEL
    assert {"encoder", "encoder/dense", "head"} <= set(document.layer_paths)
    assert document.layer("encoder").is_container
    assert document.layer("encoder/dense").parent is document.layer("encoder")
    assert {"encoder/dense:kernel", "encoder/dense:bias", "head:kernel", "head:bias"} <= set(
        document.weight_ids)
    assert document.weight("encoder/dense:kernel").shape == (3, 4)
    assert document.counts().params == 3 * 4 + 4 + 4 * 2 + 2 + 1
    assert document.counts().trainable == 3 * 4 + 4 + 4 * 2 + 2


def test_generic_savedmodel_freeze_scope_save_reload(generic, tmp_path):
    path, x, expected = generic
    document = open_document(path)
    document.set_trainable([document.layer("encoder")], False)
    assert document.trainable_state(document.layer("encoder/dense")) is False
    assert document.trainable_state(document.layer("head")) is True
    out = tmp_path / "edited"
    save_document(document, out)
    assert (out / "saved_model.pb").is_file()

    reopened = open_document(out)
    assert reopened.source_format == formats.SAVEDMODEL
    assert reopened.trainable_state(reopened.layer("encoder")) is False
    assert reopened.trainable_state(reopened.layer("head")) is True
    assert reopened.counts().trainable == 4 * 2 + 2

    # Plain TensorFlow, without FreezeStudio's state: the flags are in the SavedModel itself,
    # the signature is kept and computes the same thing.
    loaded = tf.saved_model.load(str(out))
    flags = {v.name: v.trainable for v in (loaded.k1, loaded.b1, loaded.k2, loaded.b2)}
    assert flags == {"encoder/dense/kernel:0": False, "encoder/dense/bias:0": False,
                     "head/kernel:0": True, "head/bias:0": True}
    assert list(loaded.signatures) == ["serving_default"]
    got = loaded.signatures["serving_default"](x=tf.constant(x))["y"].numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_generic_savedmodel_per_variable_freeze(generic, tmp_path):
    path, _, _ = generic
    document = open_document(path)
    document.set_trainable([document.weight("head:bias")], False)
    assert document.trainable_state(document.layer("head")) == PARTIAL
    save_document(document, tmp_path / "edited")
    reopened = open_document(tmp_path / "edited")
    assert reopened.is_weight_trainable(reopened.weight("head:bias")) is False
    assert reopened.is_weight_trainable(reopened.weight("head:kernel")) is True


def test_generic_savedmodel_model_agrees_with_document(generic):
    path, _, _ = generic
    document = open_document(path)
    document.set_trainable([document.layer("encoder")], False)
    assert {id(v) for v in document.model.trainable_weights} == {
        id(w.variable) for w in document.trainable_weights()}
