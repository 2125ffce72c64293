"""The "receives gradient" analysis against TensorFlow itself.

For real architectures and many seeded random edits (freezes at weight, layer and
container level plus random stop-gradient points), the set of variables that
`tf.GradientTape` gives a non-None, non-zero gradient for `sum(output_i * R_i)` (inference
mode) must be exactly the set the analysis marks as receiving gradient. The gradients are
computed twice: on the app's rebuilt model, and on an independent twin that runs the
original graph node by node and applies `tf.stop_gradient` by hand where the points are.
"""

import random
from collections import defaultdict

import keras
import model_builders as mb
import numpy as np
import pytest
import tensorflow as tf

from freezestudio.core.edits import stop_gradient
from freezestudio.core.errors import PlanError
from freezestudio.core.files.loading import open_document
from freezestudio.core.graph import functional, gradient_flow

CASES = [
    pytest.param(mb.text_lstm_hidden_classifier, 6, id="embedding-lstm"),
    pytest.param(mb.shared_on_one_input_with_argmax, 8, id="shared-two-outputs"),
    pytest.param(mb.sequential_in_sequential_cnn, 8, id="nested-sequential"),
    pytest.param(mb.subclassed_around_functional, 8, id="subclassed-around-functional"),
    pytest.param(mb.keras_application("MobileNetV2"), 3, id="mobilenetv2"),
    pytest.param(mb.keras_application("ResNet50"), 2, id="resnet50", marks=pytest.mark.slow),
    pytest.param(mb.keras_application("DenseNet121"), 2, id="densenet121", marks=pytest.mark.slow),
    pytest.param(mb.keras_application("EfficientNetB0"), 2, id="efficientnetb0",
                 marks=pytest.mark.slow),
]


def sample_inputs(model, rng):
    values = []
    for tensor in model.inputs:
        shape = (2, *tensor.shape[1:])
        if "int" in str(tensor.dtype):
            values.append(rng.integers(1, 50, shape).astype("int32"))
        else:
            values.append(rng.normal(size=shape).astype("float32"))
    return values if len(values) > 1 else values[0]


def random_edit(document, rnd: random.Random):
    """Random freezes at all three levels and up to three stop-gradient points."""
    layers = [n for n in document.root.walk() if n.path and any(True for _ in n.all_weights())]
    for node in rnd.sample(layers, k=min(len(layers), rnd.randint(0, 3))):
        document.set_trainable([node], False)
    for node in rnd.sample(layers, k=min(len(layers), rnd.randint(0, 2))):
        document.set_trainable([node], True)
    weights = [w for w in document.weights if w.freezable]
    document.set_trainable(rnd.sample(weights, k=min(len(weights), rnd.randint(0, 3))), False)
    table = stop_gradient.point_table(document)
    points = [a for path, pts in table.items()
              for a in stop_gradient.point_addresses(path, len(pts))]
    stop_gradient.add_stop_gradient_points(document, rnd.sample(points, k=rnd.randint(0, 3)))


def nonzero_gradients(loss_fn, variables):
    with tf.GradientTape() as tape:
        loss = loss_fn()
    grads = tape.gradient(loss, variables)
    return {id(v) for v, g in zip(variables, grads, strict=True)
            if g is not None and np.any(tf.convert_to_tensor(g).numpy() != 0)}


def weighted_sum(outputs, weights):
    return tf.add_n([tf.reduce_sum(tf.cast(o, tf.float32) * r)
                     for o, r in zip(outputs, weights, strict=True)])


def run_twin(graph, inputs, stops):
    """Runs a graph op by op, with tf.stop_gradient on the (node id, output index) in stops."""
    values = {id(t): v for t, v in zip(graph.inputs, keras.tree.flatten(inputs), strict=True)}
    for depth in sorted(graph._nodes_by_depth, reverse=True):
        for node in graph._nodes_by_depth[depth]:
            if node.is_input:
                continue
            args, kwargs = node.arguments.fill_in(values)
            op = node.operation
            inner = functional.graph_of(op)
            if inner is not None:
                outputs = keras.tree.flatten(run_twin(inner, args[0], stops))
            else:
                if getattr(op, "_call_has_training_arg", False):
                    kwargs["training"] = False
                outputs = keras.tree.flatten(op(*args, **kwargs))
            for index, (ref, value) in enumerate(zip(node.outputs, outputs, strict=True)):
                values[id(ref)] = tf.stop_gradient(value) if (id(node), index) in stops else value
    return keras.tree.map_structure(lambda t: values[id(t)], graph._outputs_struct)


def twin_stops(document):
    """The document's points as (node id, output index) of the ORIGINAL graph."""
    table = stop_gradient.point_table(document)
    keys = set()
    for address in document.stop_points:
        path, _, rest = address.partition("[")
        keys.add(table[path][int(rest[:-1]) if rest else 0])
    return keys


def mismatch(document, seed):
    """Symmetric differences (variable paths) between the analysis and both oracles."""
    rng = np.random.default_rng(seed)
    model = document.model
    inputs = sample_inputs(model, rng)
    outputs = keras.tree.flatten(model(inputs, training=False))
    r = [tf.constant(rng.normal(size=o.shape).astype("float32")) for o in outputs]
    variables = list(model.trainable_weights)
    assert {id(v) for v in variables} == {id(w.variable) for w in document.trainable_weights()}
    app_set = nonzero_gradients(
        lambda: weighted_sum(keras.tree.flatten(model(inputs, training=False)), r), variables)
    base = document.base_layers.get("", document.model)
    stops = twin_stops(document)
    twin_set = nonzero_gradients(
        lambda: weighted_sum(keras.tree.flatten(
            run_twin(functional.graph_of(base), inputs, stops)), r), variables)
    analysis = {id(w.variable) for w in document.weights if document.receives_gradient(w)}
    name = {id(w.variable): w.id for w in document.weights}
    return ({name[i] for i in app_set ^ analysis}, {name[i] for i in twin_set ^ analysis})


@pytest.mark.parametrize(("build", "rounds"), CASES)
def test_analysis_agrees_with_gradient_tape(build, rounds, tmp_path):
    path = tmp_path / "model.keras"
    build().save(path)
    rnd = random.Random(1234)
    for round_ in range(rounds):
        document = open_document(path)
        random_edit(document, rnd)
        app_diff, twin_diff = mismatch(document, seed=round_)
        assert not app_diff, f"analysis vs rebuilt model, points {document.stop_points}"
        assert not twin_diff, f"analysis vs hand-placed twin, points {document.stop_points}"


def test_text_model_embedding_cut_by_its_stop_gradient(tmp_path):
    path = tmp_path / "text.keras"
    mb.text_lstm_hidden_classifier().save(path)
    document = open_document(path)
    stop_gradient.add_stop_gradient_points(document, ["embedding"])
    embedding = document.layer("embedding")
    assert document.receives_gradient(embedding) is False
    assert document.flow_state(embedding) == frozenset({"embedding_stop_gradient"})
    assert document.receives_gradient(document.layer("lstm")) is True
    assert mismatch(document, seed=0) == (set(), set())


def test_a_wrong_analysis_is_caught(tmp_path, monkeypatch):
    """The oracle can fail: an analysis that ignores stop-gradient points is detected."""
    path = tmp_path / "text.keras"
    mb.text_lstm_hidden_classifier().save(path)
    document = open_document(path)
    stop_gradient.add_stop_gradient_points(document, ["embedding"])
    monkeypatch.setattr(gradient_flow, "cuts_gradient", lambda layer: False)
    document.invalidate_graph()
    app_diff, twin_diff = mismatch(document, seed=0)
    assert app_diff == twin_diff == {"embedding:embeddings"}


def test_shared_layer_points_are_per_call(tmp_path):
    path = tmp_path / "shared.keras"
    mb.shared_on_one_input_with_argmax().save(path)
    document = open_document(path)
    assert stop_gradient.insertion_points(document, document.layer("shared")) == [
        "shared[0]", "shared[1]"]
    # Graph order is Keras's execution order: the call on pre's output is farther from
    # the outputs than the call on the input, so it runs (and is numbered) first.
    stop_gradient.add_stop_gradient_points(document, ["shared[0]"])
    assert document.receives_gradient(document.layer("shared")) is True  # via its other call
    assert document.receives_gradient(document.layer("pre")) is False
    assert document.flow_state(document.layer("pre")) == frozenset({"shared_stop_gradient"})
    assert document.receives_gradient(document.layer("out2")) is True
    assert document.receives_gradient(document.layer("after_argmax")) is True
    assert mismatch(document, seed=3) == (set(), set())
    counts = defaultdict(int)
    for layer in document.model.layers:
        counts[layer.name] += 1
    assert max(counts.values()) == 1, "layer names stay unique"


def test_models_called_by_a_subclassed_model_hold_no_points(tmp_path):
    """Its models are attributes a rebuild cannot replace: only its boundary is a point."""
    path = tmp_path / "model.keras"
    mb.subclassed_around_functional().save(path)
    document = open_document(path)
    table = stop_gradient.addresses_by_layer(document)
    assert "encoder" in table and not [p for p in table if p.startswith("encoder/")]
    with pytest.raises(PlanError, match="subclassed"):
        stop_gradient.add_stop_gradient_points(document, ["encoder/inner/inner_dense"])
    assert document.receives_gradient(document.layer("encoder/inner/inner_dense")) is True
    stop_gradient.add_stop_gradient_points(document, ["encoder"])
    assert document.receives_gradient(document.layer("encoder/inner/inner_dense")) is False
    assert document.receives_gradient(document.layer("side")) is True
