"""LoRA adapters: plans add them through Keras's `enable_lora`; the tree, counts and
"receives gradient" agree with Keras and `tf.GradientTape` after the same calls; removal
merges or discards."""

import keras
import model_builders as mb
import numpy as np
import pytest
import tensorflow as tf

from freezestudio.core.edits import lora
from freezestudio.core.edits.plans import Plan, apply_plan, derive_plan
from freezestudio.core.errors import PlanError
from freezestudio.core.model.document import Document
from freezestudio.core.model.tree import build_keras_tree


def document_of(model):
    return Document(build_keras_tree(model), model, "memory.keras", "keras")


def plan(**keys):
    return Plan.from_dict({"freezestudio_plan": 1, **keys})


def keras_counts(model):
    return mb.size(model.weights), mb.size(model.trainable_weights)


def trained_paths(model):
    return sorted(v.path for v in model.trainable_weights)


def gets_gradient(model, inputs):
    """Variable paths with a non-zero tape gradient of a random projection of the output."""
    variables = model.trainable_weights
    with tf.GradientTape() as tape:
        output = model(inputs, training=False)
        loss = tf.reduce_sum(output * tf.random.stateless_normal(output.shape, (1, 2)))
    grads = tape.gradient(loss, variables)
    return sorted(v.path for v, g in zip(variables, grads, strict=True)
                  if g is not None and np.any(g.numpy() != 0))


def enliven(document):
    """B starts at zero (so A's gradient is zero, as in any LoRA start): make B non-zero,
    the state after a first training step, so that the tape shows both learn."""
    for adapter in document.adapters():
        b = adapter.layer.lora_kernel_b
        b.assign(np.random.default_rng(0).normal(size=b.shape).astype("float32"))


def receiving_paths(document):
    return sorted(w.variable.path for w in document.weights if document.receives_gradient(w))


def test_attention_projections_match_keras_enable_lora():
    model, twin = mb.attention_model(), mb.attention_model()
    document = document_of(model)
    apply_plan(document, plan(lora=[{"match": "mha:query/kernel", "rank": 2, "alpha": 4},
                                    {"match": "mha:value/kernel", "rank": 2, "alpha": 4}]))
    mha = twin.get_layer("mha")
    mha._query_dense.enable_lora(2, lora_alpha=4)
    mha._value_dense.enable_lora(2, lora_alpha=4)
    counts = document.counts()
    assert (counts.params, counts.trainable) == keras_counts(twin) == keras_counts(model)
    assert trained_paths(model) == trained_paths(twin)
    ids = [w.id for w in document.layer("mha").weights]
    assert "mha:query/lora_kernel_a" in ids and "mha:value/lora_kernel_b" in ids
    assert not document.is_weight_trainable(document.weight("mha:query/kernel"))
    assert not document.weight("mha:query/kernel").freezable
    assert [(a.id, a.rank, a.alpha) for a in document.adapters()] == [
        ("mha:query/kernel", 2, 4), ("mha:value/kernel", 2, 4)]
    enliven(document)
    assert receiving_paths(document) == gets_gradient(model, mb.sample_input(model))


def test_container_rule_adapts_every_dense_of_an_mlp_and_only_adapters_train():
    model, twin = mb.mlp(), mb.mlp()
    document = document_of(model)
    apply_plan(document, plan(trainable=[{"match": "*", "value": False}],
                              lora=[{"match": "*", "rank": 3}]))
    for layer in twin.layers:
        if isinstance(layer, keras.layers.Dense):
            layer.enable_lora(3)
            layer.bias.trainable = False
    assert keras_counts(model) == keras_counts(twin)
    assert (document.counts().params, document.counts().trainable) == keras_counts(twin)
    assert all("lora_kernel" in path for path in trained_paths(model))
    enliven(document)
    assert receiving_paths(document) == gets_gradient(model, mb.sample_input(model))


def test_keras_hub_bert_adapters_match_the_backbones_enable_lora():
    pytest.importorskip("keras_hub", reason="keras_hub (a test-only dependency) is absent")
    model, twin = mb.tiny_bert_classifier(), mb.tiny_bert_classifier()
    document = document_of(model)
    apply_plan(document, plan(
        trainable=[{"match": "bert", "value": False},  # keras_hub's enable_lora freezes all
                   {"match": "bert/*:*/query/bias", "value": True},  # but these layers'
                   {"match": "bert/*:*/value/bias", "value": True}],  # biases
        lora=[{"match": "bert/*:*/query/kernel", "rank": 2},
              {"match": "bert/*:*/value/kernel", "rank": 2}]))
    twin.get_layer("bert").enable_lora(2)
    assert trained_paths(model) == trained_paths(twin)
    assert (document.counts().params, document.counts().trainable) == keras_counts(twin)
    assert len(document.adapters()) == 4
    enliven(document)
    assert receiving_paths(document) == gets_gradient(model, mb.bert_inputs())


def test_remove_merged_keeps_outputs_and_discarded_restores_the_base():
    model = mb.attention_model()
    x = mb.sample_input(model)
    base_output = model(x).numpy()
    document = document_of(model)
    lora.add_adapters(document, [document.layer("mha"), document.layer("dense")], 2)
    enliven(document)
    adapted_output = model(x).numpy()
    assert not np.allclose(adapted_output, base_output)
    lora.remove_adapters(document, [document.layer("dense")], merge=False)
    lora.remove_adapters(document, [document.layer("mha")], merge=True)
    assert document.adapters() == [] and not any("lora" in w.id for w in document.weights)
    assert all(w.freezable and document.is_weight_trainable(w) for w in document.weights)
    assert keras_counts(model) == (document.counts().params, document.counts().trainable)
    twin = mb.attention_model()  # the merged MHA and the base dense: what Keras computes
    twin.set_weights(model.get_weights())
    np.testing.assert_allclose(twin(x).numpy(), model(x).numpy(), atol=1e-6)
    assert "lora_rank" not in model.get_layer("dense").get_config()


def test_rank_conflicts_and_selections_without_a_kernel_are_errors_that_change_nothing():
    document = document_of(mb.attention_model())
    apply_plan(document, plan(lora=[{"match": "dense", "rank": 2}]))
    apply_plan(document, plan(lora=[{"match": "dense", "rank": 2}]))  # same rank: kept
    assert [a.rank for a in document.adapters()] == [2]
    before = [w.id for w in document.weights]
    with pytest.raises(PlanError, match="dense:kernel already has a LoRA adapter of rank 2"):
        apply_plan(document, plan(lora=[{"match": "*", "rank": 4}]))
    with pytest.raises(PlanError, match="'norm' selects no layer that takes a LoRA adapter"):
        apply_plan(document, plan(lora=[{"match": "norm", "rank": 4}]))
    with pytest.raises(PlanError, match="'mha:query/bias' selects no layer"):
        apply_plan(document, plan(lora=[{"match": "mha:query/bias", "rank": 4}]))
    assert [w.id for w in document.weights] == before


def test_a_kernel_constraint_is_refused_by_name():
    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(
        2, kernel_constraint="non_neg", name="pos")(inputs))
    document = document_of(model)
    with pytest.raises(PlanError, match="pos:kernel: Keras's LoRA is incompatible"):
        apply_plan(document, plan(lora=[{"match": "pos", "rank": 1}]))


def test_derived_plan_replays_adapters_and_their_freeze_state():
    document = document_of(mb.attention_model())
    apply_plan(document, plan(trainable=[{"match": "*", "value": False}],
                              lora=[{"match": "mha:*/kernel", "rank": 2, "alpha": 8}]))
    document.set_trainable([document.weight("mha:key/lora_kernel_b")], False)
    derived = derive_plan(document)
    again = document_of(mb.attention_model())
    apply_plan(again, Plan.from_dict(derived.to_dict()))
    assert [(a.id, a.rank, a.alpha) for a in again.adapters()] == [
        (a.id, a.rank, a.alpha) for a in document.adapters()]
    assert [(w.id, again.is_weight_trainable(w)) for w in again.weights] == [
        (w.id, document.is_weight_trainable(w)) for w in document.weights]


def test_an_adapter_state_brings_back_the_identical_adapters_after_removal():
    """Undo/redo's core: a state taken after an add restores those adapters exactly (A's
    random values, B, rank, alpha, outputs) once they were removed; Keras's own
    `enable_lora` again would draw another A."""
    model = mb.mlp()
    document = document_of(model)
    apply_plan(document, plan(lora=[{"match": "dense", "rank": 2, "alpha": 3.0},
                                    {"match": "dense_2", "rank": 1}]))
    enliven(document)
    x = np.random.default_rng(2).normal(size=(5, 4)).astype("float32")
    expected = model(x).numpy()
    state = lora.AdapterState.take(document)
    values = {w.id: w.variable.numpy().tobytes() for w in document.weights}
    assert lora.remove_adapters(document, [document.root], merge=False)
    assert document.adapters() == []
    lora.add_adapters(document, [document.layer("dense")], 2, 3.0)  # a fresh A: differs
    assert document.weight("dense:lora_kernel_a").variable.numpy().tobytes() != \
        values["dense:lora_kernel_a"]
    lora.remove_adapters(document, [document.root], merge=False)
    state.restore(document)
    assert [(a.id, a.rank, a.alpha) for a in document.adapters()] == [
        ("dense:kernel", 2, 3.0), ("dense_2:kernel", 1, 1)]
    assert {w.id: w.variable.numpy().tobytes() for w in document.weights} == values
    assert model(x).numpy().tobytes() == expected.tobytes()
