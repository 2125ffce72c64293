"""Tree and parameter counts of opened documents, with Keras itself as the oracle."""

import keras
import model_builders as mb
import numpy as np
import pytest

from freezestudio.core.files.loading import open_document
from freezestudio.core.model.tree import WeightNode

SMALL_MODELS = {
    "sequential_with_backbone": mb.sequential_with_backbone,
    "shared_two_outputs": mb.shared_two_outputs,
    "text_lstm": mb.text_lstm,
    "attention_model": mb.attention_model,
    "custom_layer_model": mb.custom_layer_model,
    "nested_sequential": mb.nested_sequential,
}

APPLICATIONS = {
    "MobileNetV2": (lambda: mb.mobilenet_v2(size=32, alpha=0.35), ()),
    "ResNet50": (lambda: keras.applications.ResNet50(input_shape=(32, 32, 3), weights=None),
                 (pytest.mark.slow,)),
    "EfficientNetB0": (
        lambda: keras.applications.EfficientNetB0(input_shape=(32, 32, 3), weights=None),
        (pytest.mark.slow,)),
    "DenseNet121": (lambda: keras.applications.DenseNet121(input_shape=(32, 32, 3), weights=None),
                    (pytest.mark.slow,)),
}


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """Builds each model once per module, saves it as .keras; returns a cached opener."""
    folder = tmp_path_factory.mktemp("tree_models")
    cache = {}

    def get(name):
        if name not in cache:
            builder = SMALL_MODELS.get(name) or APPLICATIONS[name][0]
            model = builder()
            path = folder / f"{name}.keras"
            model.save(path)
            cache[name] = path
        return cache[name]

    return get


def open_pair(saved, name):
    """The document and a plain Keras load of the same file (the oracle)."""
    path = saved(name)
    return open_document(path), keras.saving.load_model(path, compile=False)


def check_tree_and_counts(document, oracle):
    model = document.model
    # Same architecture as the oracle, loaded independently.
    assert model.count_params() == oracle.count_params()
    expected = mb.keras_layer_paths(model)
    assert set(mb.keras_layer_paths(oracle)) == set(expected)
    # Every layer appears once, at its docs/architecture.md path, bound to that very layer object.
    assert set(document.layer_paths) == set(expected) | {""}
    assert len(document.layer_paths) == len(set(document.layer_paths))
    assert document.layer("").layer is model
    for path, layer in expected.items():
        node = document.layer(path)
        assert node.layer is layer, path
        assert node.name == layer.name
        assert node.class_name == type(layer).__name__
        if "/" in path:
            assert node.parent.path == path.rsplit("/", 1)[0]
        else:
            assert node.parent is document.root
    # Weight ids unique; every Keras variable shown exactly once.
    ids = document.weight_ids
    assert len(ids) == len(set(ids))
    shown = [w.variable for w in document.weights]
    assert len({id(v) for v in shown}) == len(shown)
    assert {id(v) for v in shown} == {id(v) for v in model.weights}
    for weight_id in ids:
        weight = document.find(weight_id)
        assert isinstance(weight, WeightNode)
        assert weight_id == f"{weight.layer.path}:{weight.key}"
        assert weight.shape == tuple(weight.variable.shape)
    # Per node, Keras's own counts.
    for node in document.root.walk():
        params, trainable = mb.layer_params(node.layer)
        counts = document.counts(node)
        assert (counts.params, counts.trainable) == (params, trainable), node.path
        assert counts.non_trainable == params - trainable
    # Totals.
    totals = document.counts()
    assert totals.params == model.count_params() == oracle.count_params()
    assert totals.trainable == mb.size(model.trainable_weights) == mb.size(oracle.trainable_weights)
    assert totals.trainable == sum(
        int(np.prod(w.shape)) for w in document.trainable_weights())
    # The document's trainable set is exactly Keras's, as variables.
    assert mb.document_trainable_indices(document) == mb.trainable_indices(oracle)


@pytest.mark.parametrize("name", list(SMALL_MODELS))
def test_small_models_tree_and_counts(saved, name):
    document, oracle = open_pair(saved, name)
    check_tree_and_counts(document, oracle)


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=marks) for n, (_, marks) in APPLICATIONS.items()])
def test_keras_applications_tree_and_counts(saved, name):
    document, oracle = open_pair(saved, name)
    check_tree_and_counts(document, oracle)
    # BatchNorm statistics exist in all four and are never trainable.
    stats = [w for w in document.weights if w.key in ("moving_mean", "moving_variance")]
    assert stats
    assert not any(document.is_weight_trainable(w) for w in stats)
    assert document.counts().non_trainable == mb.size(oracle.non_trainable_weights)


def test_nested_paths_use_outer_slash_inner(saved):
    document, _ = open_pair(saved, "sequential_with_backbone")
    assert {"backbone", "backbone/conv", "backbone/bn", "drop", "head"} <= set(
        document.layer_paths)
    assert document.layer("backbone").is_container
    assert [c.path for c in document.layer("backbone").children] == [
        "backbone/image", "backbone/conv", "backbone/bn", "backbone/relu", "backbone/gap"]
    assert set(document.weight_ids) >= {
        "backbone/conv:kernel", "backbone/bn:moving_mean", "head:bias"}


def test_shared_layer_shown_once_with_both_outputs(saved):
    document, oracle = open_pair(saved, "shared_two_outputs")
    assert len(document.model.outputs) == 2
    assert [p for p in document.layer_paths if p.endswith("shared")] == ["shared"]
    assert [w for w in document.weight_ids if w.startswith("shared:")] == [
        "shared:kernel", "shared:bias"]
    assert document.counts(document.layer("shared")).params == 5 * 4 + 4


def test_multi_head_attention_weight_keys(saved):
    document, oracle = open_pair(saved, "attention_model")
    mha_ids = [w for w in document.weight_ids if w.startswith("mha:")]
    for part in ("query", "key", "value", "attention_output"):
        assert f"mha:{part}/kernel" in mha_ids
        assert f"mha:{part}/bias" in mha_ids
    assert len(mha_ids) == len(oracle.get_layer("mha").weights) == 8
    assert document.weight("mha:query/kernel").shape == (8, 2, 4)


def test_custom_layer_subweights_and_non_trainable_weight(saved):
    document, oracle = open_pair(saved, "custom_layer_model")
    layer = document.model.get_layer("scaled")
    assert isinstance(layer, mb.ScaledDense)
    node = document.layer("scaled")
    assert len(node.weights) == len(layer.weights) == 4
    scale = document.weight("scaled:scale")
    assert scale.variable is layer.scale
    assert not document.is_weight_trainable(scale)
    assert document.is_weight_trainable(document.weight("scaled:offset"))
    # The sub-layer's variables belong to the custom layer's node, not to a node of their own.
    assert {id(w.variable) for w in node.weights} >= {
        id(layer.inner.kernel), id(layer.inner.bias)}
    assert document.counts(node).trainable == 4 * 3 + 3 + 3


def test_text_model_integer_input(saved):
    document, oracle = open_pair(saved, "text_lstm")
    assert document.weight("embedding:embeddings").shape == (50, 8)
    assert {"lstm:kernel", "lstm:recurrent_kernel", "lstm:bias"} <= set(document.weight_ids)
