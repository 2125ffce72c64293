"""Weight ids: unique within a model, and stable from one opening of a file to the next."""

import keras
import model_builders as mb

from freezestudio.core.files.loading import open_document
from freezestudio.core.files.saving import save_document


def check_ids(document, model):
    ids = document.weight_ids
    assert len(ids) == len(set(ids))
    assert len(document.weights) == len(model.weights)
    assert document.counts().params == model.count_params()
    assert document.counts().trainable == mb.size(model.trainable_weights)


def test_wrapper_layers_have_unique_keys(tmp_path):
    inputs = keras.Input((5, 3), name="seq")
    x = keras.layers.Bidirectional(keras.layers.LSTM(4, return_sequences=True), name="bi")(inputs)
    x = keras.layers.TimeDistributed(keras.layers.Dense(2), name="td")(x)
    x = mb.TwoBranches(name="two")(x)
    keras.Model(inputs, x).save(tmp_path / "m.keras")
    document = open_document(tmp_path / "m.keras")
    check_ids(document, document.model)
    bi = [w for w in document.weight_ids if w.startswith("bi:")]
    assert len(bi) == 6 and any("forward" in w for w in bi) and any("backward" in w for w in bi)
    assert {w for w in document.weight_ids if w.startswith("two:")} == {
        "two:left/kernel", "two:left/bias", "two:right/kernel", "two:right/bias"}
    # Per-weight freezing through those keys reaches the right variable.
    document.set_trainable([document.weight("two:right/kernel")], False)
    two = document.model.get_layer("two")
    assert not two.right.kernel.trainable and two.left.kernel.trainable


def test_same_name_weights_get_unique_ids(tmp_path):
    mb.single_layer_model(mb.SameNameWeights(name="same")).save(tmp_path / "m.keras")
    document = open_document(tmp_path / "m.keras")
    check_ids(document, document.model)


def test_unnamed_weight_ids_are_stable_across_openings(tmp_path):
    mb.single_layer_model(mb.UnnamedWeights(name="u")).save(tmp_path / "m.keras")
    first = open_document(tmp_path / "m.keras").weight_ids
    second = open_document(tmp_path / "m.keras").weight_ids
    assert first == second


def test_per_weight_freeze_of_unnamed_weight_survives_save(tmp_path):
    mb.single_layer_model(mb.UnnamedWeights(name="u")).save(tmp_path / "m.keras")
    document = open_document(tmp_path / "m.keras")
    second = [w for w in document.weights if w.layer.path == "u"][1]
    document.set_trainable([second], False)
    save_document(document, tmp_path / "edited.keras")
    reopened = open_document(tmp_path / "edited.keras")
    frozen = [w for w in reopened.weights if w.layer.path == "u"
              and not reopened.is_weight_trainable(w)]
    assert len(frozen) == 1
    assert frozen[0].variable is reopened.model.get_layer("u").b
