"""The layer-graph primitives of core/graph/functional.py on real Keras models.

Keras itself is the oracle: replayed graphs must compute the model's outputs bit for bit
with the model's own variables, every call's inputs must come from earlier calls, and the
producer of each output tensor must be the call that lists it. The last test keeps the
rest of the package off Keras's private graph attributes.
"""

import re
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

import freezestudio
from freezestudio.core.graph.functional import (
    all_calls,
    execution_order,
    graph_of,
    inbound_call,
    inputs_struct,
    is_keras_operation,
    layer_calls,
    outputs_struct,
    producer,
    replay,
)
from freezestudio.core.graph.stop_gradient_layer import StopGradient


def branches():
    """Two named inputs (a dict), a fork, a merge and two outputs."""
    a = keras.Input((4,), name="a")
    b = keras.Input((3,), name="b")
    trunk = keras.layers.Dense(5, activation="relu", name="trunk")(a)
    left = keras.layers.Dense(3, name="left")(trunk)
    right = keras.layers.Dense(3, name="right")(keras.layers.Concatenate(name="cat_in")([trunk, b]))
    merged = keras.layers.Add(name="add")([left, right])
    out = keras.layers.Dense(2, name="out")(merged)
    return keras.Model({"a": a, "b": b}, [out, left], name="branches")


def shared():
    """One Dense called on two inputs (two calls of one layer), then a merge."""
    x1 = keras.Input((4,), name="x1")
    x2 = keras.Input((4,), name="x2")
    dense = keras.layers.Dense(3, name="shared")
    merged = keras.layers.Concatenate(name="cat")([dense(x1), dense(x2)])
    return keras.Model([x1, x2], keras.layers.Dense(1, name="head")(merged), name="shared_model")


def nested():
    """A Functional and a Sequential inside a Functional; the inner Functional is called
    twice."""
    i = keras.Input((4,))
    inner = keras.Model(i, keras.layers.Dense(4, activation="tanh", name="inner_dense")(i),
                        name="inner")
    seq = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="seq_dense"),
                            keras.layers.BatchNormalization(name="seq_bn")], name="seq")
    x = keras.Input((4,), name="x")
    y = seq(inner(inner(x)))
    return keras.Model(x, keras.layers.Dense(2, name="top")(y), name="nested")


def sequential():
    return keras.Sequential([keras.Input((6,)), keras.layers.Dense(4, name="d1"),
                             keras.layers.Dropout(0.5, name="drop"),
                             keras.layers.Dense(2, name="d2")], name="seq_model")


MODELS = [pytest.param(f, id=f.__name__) for f in (branches, shared, nested, sequential)]


def sample(model, seed=0):
    rng = np.random.default_rng(seed)
    struct = inputs_struct(graph_of(model))
    return keras.tree.map_structure(
        lambda t: rng.normal(size=(3, *t.shape[1:])).astype("float32"), struct)


def assert_bitwise_equal(a, b):
    a, b = keras.tree.flatten(a), keras.tree.flatten(b)
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert np.array_equal(keras.ops.convert_to_numpy(x), keras.ops.convert_to_numpy(y))


def test_graph_of():
    model = branches()
    assert graph_of(model) is model
    seq = sequential()
    graph = graph_of(seq)
    assert isinstance(graph, keras.Model) and graph is not seq
    assert graph.outputs == seq.outputs
    assert graph_of(keras.Sequential([keras.layers.Dense(2)])) is None  # never built
    assert graph_of(keras.layers.Dense(2)) is None

    class Sub(keras.Model):
        def call(self, x):
            return x

    assert graph_of(Sub()) is None


@pytest.mark.parametrize("build", MODELS)
def test_execution_order_runs_every_call_after_its_inputs(build):
    model = build()
    graph = graph_of(model)
    available = {id(t) for t in graph.inputs}
    calls = list(execution_order(graph))
    for node in calls:
        assert not node.is_input
        assert all(id(t) in available for t in node.input_tensors), node
        available.update(id(t) for t in node.outputs)
    assert all(id(t) in available for t in graph.outputs)
    # every layer of the graph is called, a shared one once per use
    layers = [layer for layer in graph.layers if not isinstance(layer, keras.layers.InputLayer)]
    assert {id(n.operation) for n in calls} == {id(layer) for layer in layers}
    uses = {"shared": 2, "inner": 2}
    for layer in layers:
        assert sum(n.operation is layer for n in calls) == uses.get(layer.name, 1)


@pytest.mark.parametrize("build", MODELS)
def test_reverse_order_and_inputs(build):
    graph = graph_of(build())
    backward = list(execution_order(graph, reverse=True, include_inputs=True))
    produced_later = set()
    for node in reversed(backward):  # every producer before (in reverse: after) its consumers
        assert all(id(t) in produced_later for t in node.input_tensors), node
        produced_later.update(id(t) for t in node.outputs)
    inputs = [n for n in backward if n.is_input]
    assert {id(t) for n in inputs for t in n.outputs} == {id(t) for t in graph.inputs}
    assert {id(n) for n in backward if not n.is_input} == {id(n) for n in execution_order(graph)}
    assert {id(n) for n in backward} == {id(n) for n in execution_order(graph, include_inputs=True)}
    assert {id(n) for n in all_calls(graph)} == {id(n) for n in backward}
    assert len(all_calls(graph)) == len(backward)


def test_execution_order_survives_save_and_reload(tmp_path):
    model = shared()
    path = tmp_path / "shared.keras"
    model.save(path)
    loaded = keras.models.load_model(path)

    def signature(m):
        return [(n.operation.name, [producer(t).name for t in n.input_tensors])
                for n in execution_order(graph_of(m))]

    assert signature(loaded) == signature(model)


@pytest.mark.parametrize("build", MODELS)
def test_producer_and_inbound_call(build):
    graph = graph_of(build())
    for node in execution_order(graph, include_inputs=True):
        for index, tensor in enumerate(node.outputs):
            assert inbound_call(tensor) == (node, index)
            assert producer(tensor) is node.operation
    for tensor in graph.inputs:
        assert isinstance(producer(tensor), keras.layers.InputLayer)
    assert producer(np.zeros(3)) is None and inbound_call(np.zeros(3)) is None
    assert inbound_call(tf.constant(1.0)) is None


def test_layer_calls_of_a_shared_layer():
    model = shared()
    layer = model.get_layer("shared")
    calls = layer_calls(layer)
    assert len(calls) == 2 and all(c.operation is layer for c in calls)
    assert [c for c in execution_order(model) if c.operation is layer] == calls
    replay(model, {id(t): t for t in model.inputs})
    assert len(layer_calls(layer)) == 4  # a replay adds calls; the graph keeps its own
    assert len([c for c in execution_order(model) if c.operation is layer]) == 2


def test_inputs_and_outputs_struct():
    model = branches()
    struct = inputs_struct(model)
    assert isinstance(struct, dict) and set(struct) == {"a", "b"}
    assert {id(t) for t in struct.values()} == {id(t) for t in model.inputs}
    assert [id(t) for t in outputs_struct(model)] == [id(t) for t in model.outputs]
    seq = sequential()
    assert inputs_struct(seq) is None and outputs_struct(seq) is None
    assert keras.tree.flatten(inputs_struct(graph_of(seq))) == seq.inputs


def test_is_keras_operation():
    assert is_keras_operation(keras.layers.Dense(2))
    assert is_keras_operation(branches())
    assert not is_keras_operation(np.zeros(2))
    assert not is_keras_operation(object())


@pytest.mark.parametrize("build", MODELS)
def test_replay_computes_the_same_outputs_with_the_same_variables(build):
    model = build()
    graph = graph_of(model)
    x = sample(model)
    seen = []
    outputs = replay(graph, {id(t): t for t in graph.inputs},
                     layer_of=lambda node: seen.append(node) or node.operation)
    rebuilt = keras.Model(inputs_struct(graph), outputs, name=model.name)
    assert seen == list(execution_order(graph))
    assert [id(v) for v in rebuilt.weights] == [id(v) for v in model.weights]
    assert_bitwise_equal(rebuilt(x, training=False), model(x, training=False))


def test_replay_tells_apart_the_calls_of_a_shared_layer():
    model = shared()
    layer = model.get_layer("shared")
    first, second = layer_calls(layer)
    x = sample(model)

    def with_stops(cut_calls):
        def after(node, index, tensor):
            return StopGradient()(tensor) if node in cut_calls else tensor
        outputs = replay(model, {id(t): t for t in model.inputs}, after=after)
        return keras.Model(inputs_struct(model), outputs)

    def kernel_gradient(rebuilt):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(rebuilt(x, training=False))
        return tape.gradient(loss, layer.kernel)

    one = with_stops([first])
    both = with_stops([first, second])
    assert sum(isinstance(sub, StopGradient) for sub in one.layers) == 1
    assert sum(isinstance(sub, StopGradient) for sub in both.layers) == 2
    assert_bitwise_equal(one(x, training=False), model(x, training=False))
    assert_bitwise_equal(both(x, training=False), model(x, training=False))
    assert np.any(kernel_gradient(one).numpy() != 0)  # the second call still trains it
    assert kernel_gradient(both) is None


def test_replay_from_a_cut_skips_the_calls_upstream():
    model = branches()
    trunk = model.get_layer("trunk")
    (call,) = layer_calls(trunk)
    feature = keras.Input(batch_shape=call.outputs[0].shape, name="trunk_features")
    b = inputs_struct(model)["b"]
    tensors = {id(call.outputs[0]): feature, id(b): b}
    outputs = replay(model, tensors, skip={id(call)})
    head = keras.Model([feature, b], outputs)
    assert all(layer is not trunk for layer in head.layers)
    x = sample(model)
    features = trunk(x["a"])
    assert_bitwise_equal(head([features, tf.constant(x["b"])], training=False),
                         model(x, training=False))


def test_replay_with_a_rebuilt_nested_model():
    model = nested()
    inner = model.get_layer("inner")
    x = sample(model)

    def double(tensor, *args, **kwargs):
        return inner(inner(tensor))  # the same computation, twice: a stand-in for a rebuild

    calls = []

    def layer_of(node):
        if node.operation is inner:
            calls.append(node)
            return (lambda t, *a, **k: inner(t)) if len(calls) == 1 else double
        return node.operation

    rebuilt = keras.Model(inputs_struct(model),
                          replay(model, {id(t): t for t in model.inputs}, layer_of=layer_of))
    assert len(calls) == 2 and calls[0] is not calls[1]
    reference = model.get_layer("top")(model.get_layer("seq")(inner(inner(inner(x)))))
    assert_bitwise_equal(rebuilt(x, training=False), reference)


_PRIVATE_GRAPH_ATTRIBUTES = re.compile(
    r"\b(_nodes_by_depth|_keras_history|_inbound_nodes|_inputs_struct|_outputs_struct"
    r"|_functional)\b")


def test_only_core_graph_reads_the_private_graph_attributes():
    package = Path(freezestudio.__file__).parent
    graph_package = package / "core" / "graph"
    found = []
    for path in sorted(package.rglob("*.py")):
        if graph_package in path.parents:
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if _PRIVATE_GRAPH_ATTRIBUTES.search(line):
                found.append(f"{path.relative_to(package.parent)}:{number}: {line.strip()}")
    assert not found, "read them through core/graph/functional.py:\n" + "\n".join(found)
