"""Every export format on real architectures: exported, loaded back with its own runtime
(independently of FreezeStudio's verification), numerically equal to the Keras model, and
free of stop-gradient layers in every deployment format.

Models: MobileNetV2 (alpha 0.35, 32x32, logits, BatchNorm statistics calibrated so the
outputs are not ~0), a text model (Embedding + Bidirectional LSTM + GRU, fixed length, a
stop-gradient after the embedding), a two-input two-output functional model with a shared
layer, and an edited Sequential (stop-gradient inside a nested backbone, frozen backbone,
one bias frozen on its own).
"""

import warnings

import keras
import model_builders as mb
import numpy as np
import pytest
import tensorflow as tf

from freezestudio.core.edits.stop_gradient import add_stop_gradient_points
from freezestudio.core.export import ExportOptions, export_document
from freezestudio.core.export.frozen_graph import (
    companion_path,
    load_graph_def,
    read_tensors,
)
from freezestudio.core.export.onnx import onnx_nodes
from freezestudio.core.files.loading import open_document

pytestmark = pytest.mark.slow

DEPLOYMENT = ["savedmodel", "tflite", "onnx", "frozen-graph"]
ALL = ["keras", "h5", *DEPLOYMENT]
SUFFIX = {"keras": ".keras", "h5": ".h5", "savedmodel": "", "tflite": ".tflite",
          "onnx": ".onnx", "frozen-graph": ".pb"}
TOL = 1e-4

BUILDERS = {"mobilenet": (mb.mobilenet_v2_calibrated_logits, ["block_16_project"],
                          ["block_*"]),
            "text": (mb.text_bilstm_gru, ["embedding"], []),
            "two_outputs": (mb.shared_two_outputs, [], []),
            "edited": (mb.sequential_with_backbone_calibrated, ["backbone/bn"],
                       ["backbone", "head:bias"])}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("export")


@pytest.fixture(scope="module")
def documents(workdir):
    from freezestudio.core.edits.plans import Plan, Rule, apply_plan

    cache = {}

    def get(name):
        if name not in cache:
            build, points, frozen = BUILDERS[name]
            path = workdir / f"{name}.keras"
            build().save(path)
            document = open_document(path)
            if frozen:
                apply_plan(document, Plan(trainable=[Rule(p, False) for p in frozen]))
            if points:
                add_stop_gradient_points(document, points)
            cache[name] = document
        return cache[name]

    return get


@pytest.fixture(scope="module")
def exported(workdir, documents):
    cache = {}

    def get(name, fmt, quantize=False):
        key = (name, fmt, quantize)
        if key not in cache:
            out = workdir / f"{name}_{fmt}{'_q' if quantize else ''}{SUFFIX[fmt]}"
            report = export_document(documents(name), fmt, out, ExportOptions(quantize=quantize))
            cache[key] = (report, out)
        return cache[key]

    return get


def sample(document, batch=3, seed=7):
    """Inputs by input-layer name (ints within the embedding's vocabulary)."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for tensor in document.model.inputs:
        name = tensor._keras_history.operation.name
        shape = (batch, *tensor.shape[1:])
        if "int" in str(tensor.dtype):
            feeds[name] = rng.integers(0, 60, size=shape).astype("int32")
        else:
            feeds[name] = rng.standard_normal(shape).astype("float32")
    return feeds


def keras_outputs(document, feeds):
    """The edited model (stop-gradient layers included) in inference mode."""
    model = document.model
    args = [feeds[t._keras_history.operation.name] for t in model.inputs]
    outputs = model(args[0] if len(args) == 1 else args, training=False)
    outputs = outputs if isinstance(outputs, list | tuple) else [outputs]
    return [np.asarray(o) for o in outputs]


def output_names(document):
    base = document.base_layers.get("", document.model)
    names = getattr(base, "output_names", None)
    return list(names) if names else [base.layers[-1].name]


# --- independent runtimes ---------------------------------------------------------------

def run_savedmodel(path, feeds, names):
    signature = tf.saved_model.load(str(path)).signatures["serving_default"]
    assert set(signature.structured_input_signature[1]) == set(feeds)
    assert set(signature.structured_outputs) == set(names)
    result = signature(**{k: tf.constant(v) for k, v in feeds.items()})
    return [result[n].numpy() for n in names]


def tflite_interpreter(path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return tf.lite.Interpreter(model_path=str(path))


def run_tflite(path, feeds, names):
    interpreter = tflite_interpreter(path)
    signature = interpreter.get_signature_list()["serving_default"]
    assert sorted(signature["inputs"]) == sorted(feeds)
    assert sorted(signature["outputs"]) == sorted(names)
    if len(names) == 1 and len(feeds) == 1:  # plain tensor API, no signature runner
        (name, value), = feeds.items()
        detail = interpreter.get_input_details()[0]
        interpreter.resize_tensor_input(detail["index"], value.shape)
        interpreter.allocate_tensors()
        interpreter.set_tensor(detail["index"], value)
        interpreter.invoke()
        return [interpreter.get_tensor(interpreter.get_output_details()[0]["index"])]
    result = interpreter.get_signature_runner("serving_default")(**feeds)
    return [result[n] for n in names]


def run_onnx(path, feeds, names):
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert sorted(i.name for i in session.get_inputs()) == sorted(feeds)
    assert sorted(o.name for o in session.get_outputs()) == sorted(names)
    return session.run(names, feeds)


def run_frozen_graph(path, feeds, names):
    rows = read_tensors(companion_path(path))
    inputs = {r.name: r.tensor for r in rows if r.kind == "input"}
    outputs = {r.name: r.tensor for r in rows if r.kind == "output"}
    assert sorted(inputs) == sorted(feeds) and sorted(outputs) == sorted(names)
    graph_def = load_graph_def(path)
    assert not {n.op for n in graph_def.node} & {"VarHandleOp", "ReadVariableOp", "VariableV2"}
    graph = tf.Graph()
    with graph.as_default():
        tf.import_graph_def(graph_def, name="")
    with tf.compat.v1.Session(graph=graph) as session:
        return session.run([outputs[n] for n in names],
                           {inputs[k]: v for k, v in feeds.items()})


def run_keras_file(path, feeds, names):
    import freezestudio.core.graph.stop_gradient_layer  # noqa: F401 - registers StopGradient

    model = keras.saving.load_model(path, compile=False)
    args = [feeds[t._keras_history.operation.name] for t in model.inputs]
    outputs = model(args[0] if len(args) == 1 else args, training=False)
    return [np.asarray(o) for o in (outputs if isinstance(outputs, list | tuple) else [outputs])]


RUNNERS = {"savedmodel": run_savedmodel, "tflite": run_tflite, "onnx": run_onnx,
           "frozen-graph": run_frozen_graph, "keras": run_keras_file, "h5": run_keras_file}


# --- what a deployment export contains ----------------------------------------------------

def savedmodel_nodes(path):
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel.FromString((path / "saved_model.pb").read_bytes())
    graph = proto.meta_graphs[0].graph_def
    nodes = [(n.op, n.name) for n in graph.node]
    return nodes + [(n.op, n.name) for f in graph.library.function for n in f.node_def]


def tflite_nodes(path):
    interpreter = tflite_interpreter(path)
    ops = [(op["op_name"], "") for op in interpreter._get_ops_details()]
    return ops + [("", t["name"]) for t in interpreter.get_tensor_details()]


def frozen_graph_nodes(path):
    graph_def = load_graph_def(path)
    nodes = [(n.op, n.name) for n in graph_def.node]
    return nodes + [(n.op, n.name) for f in graph_def.library.function for n in f.node_def]


NODES = {"savedmodel": savedmodel_nodes, "tflite": tflite_nodes, "onnx": onnx_nodes,
         "frozen-graph": frozen_graph_nodes}


def stop_gradient_traces(nodes):
    return [(op, name) for op, name in nodes
            if "StopGradient" in op or "stop_gradient" in name.lower()]


# --- tests --------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ALL)
@pytest.mark.parametrize("name", list(BUILDERS))
def test_export_loads_back_and_matches_keras(documents, exported, name, fmt):
    document = documents(name)
    report, path = exported(name, fmt)
    names = output_names(document)
    assert report.paths[0] == path and path.exists()
    assert report.verified and report.ok
    assert [c.output for c in report.checks] == names
    feeds = sample(document)
    expected = keras_outputs(document, feeds)
    assert max(float(np.abs(e).max()) for e in expected) > 0.05  # not a degenerate model
    actual = RUNNERS[fmt](path, feeds, names)
    for want, got in zip(expected, actual, strict=True):
        # float32 graphs with folded/fused ops differ in the last bits, relative to the scale
        np.testing.assert_allclose(got, want, rtol=0, atol=TOL * max(1.0, np.abs(want).max()))


@pytest.mark.parametrize("fmt", DEPLOYMENT)
@pytest.mark.parametrize("name", ["mobilenet", "text", "edited"])
def test_deployment_exports_hold_no_stop_gradient(documents, exported, name, fmt):
    assert documents(name).stop_points
    _, path = exported(name, fmt)
    nodes = NODES[fmt](path)
    assert nodes
    assert stop_gradient_traces(nodes) == []


def test_the_stop_gradient_detector_sees_a_kept_layer(documents, workdir):
    """The check above is meaningful: exporting the edited graph itself shows the layer."""
    document = documents("text")
    archive = keras.export.ExportArchive()
    archive.track(document.model)
    archive.add_endpoint("serving_default", document.model.call,
                         [tf.TensorSpec((None, 12), tf.int32)])
    archive.write_out(str(workdir / "with_stop"), verbose=False)
    assert stop_gradient_traces(savedmodel_nodes(workdir / "with_stop"))


def test_tflite_runs_unrolled_recurrent_layers_with_builtin_ops_only(exported):
    report, path = exported("text", "tflite")
    assert any("unrolled" in note and "bilstm" in note and "gru" in note for note in report.notes)
    ops = {op for op, _ in tflite_nodes(path) if op}
    assert not {op for op in ops if op.startswith("Flex") or op in ("CUSTOM", "WHILE")}


def test_quantized_tflite_on_random_inputs_is_reported_not_checked(documents, exported):
    """Sizes and agreement on real data: test_export_quantized.py."""
    name = "text"
    report, path = exported(name, "tflite", quantize=True)
    assert report.verified and all(c.limit is None and c.min_agreement is None
                                   for c in report.checks)
    assert all(np.isfinite(c.max_abs_diff) for c in report.checks)
    assert any("quantised" in note for note in report.notes)
    feeds = sample(documents(name))
    got = run_tflite(path, feeds, output_names(documents(name)))
    assert all(np.isfinite(g).all() for g in got)


def test_savedmodel_signature_keys_are_the_model_names(documents, exported):
    _, path = exported("two_outputs", "savedmodel")
    signature = tf.saved_model.load(str(path)).signatures["serving_default"]
    assert sorted(signature.structured_input_signature[1]) == ["a", "b"]
    assert sorted(signature.structured_outputs) == ["out1", "out2"]


def test_frozen_graph_names_its_tensors(exported):
    report, path = exported("two_outputs", "frozen-graph")
    assert report.paths == [path, companion_path(path)]
    rows = read_tensors(companion_path(path))
    assert [(r.kind, r.name, r.tensor) for r in rows if r.kind == "input"] == [
        ("input", "a", "a:0"), ("input", "b", "b:0")]
    assert sorted(r.name for r in rows if r.kind == "output") == ["out1", "out2"]


def test_onnx_has_a_dynamic_batch_and_the_default_opset(exported):
    import onnx

    _, path = exported("mobilenet", "onnx")
    model = onnx.load(str(path))
    assert [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")] == [17]
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert not dims[0].HasField("dim_value") and [d.dim_value for d in dims[1:]] == [32, 32, 3]


@pytest.mark.parametrize("fmt", ["keras", "h5"])
def test_editable_exports_keep_flags_and_points(documents, exported, fmt):
    document = documents("edited")
    _, path = exported("edited", fmt)
    copy = open_document(path)
    assert copy.stop_points == document.stop_points == ["backbone/bn"]
    assert {w.id: copy.is_weight_trainable(w) for w in copy.weights} == \
        {w.id: document.is_weight_trainable(w) for w in document.weights}
    assert copy.counts().trainable == document.counts().trainable
    assert document.source_path.name == "edited.keras"  # an export is not "save as"


def test_portable_keras_export_drops_stop_gradient_layers(documents, workdir):
    document = documents("edited")
    out = workdir / "edited_portable.keras"
    report = export_document(document, "keras", out, ExportOptions(portable=True))
    assert report.ok and report.verified
    model = keras.saving.load_model(out, compile=False)
    layers = [la for la in model._flatten_layers() if "StopGradient" in type(la).__name__]
    assert layers == []
    assert document.stop_points == ["backbone/bn"]


# --- LoRA adapters: merged in deployment exports ------------------------------------------

@pytest.fixture(scope="module")
def lora_document(workdir):
    from freezestudio.core.edits.plans import Plan, apply_plan

    path = workdir / "lora.keras"
    mb.attention_model().save(path)
    document = open_document(path)
    apply_plan(document, Plan.from_dict({"freezestudio_plan": 1, "lora": [
        {"match": "mha:query/kernel", "rank": 2, "alpha": 4},
        {"match": "mha:value/kernel", "rank": 2}, {"match": "dense", "rank": 1}]}))
    for adapter in document.adapters():  # live adapters: B away from its zero start
        b = adapter.layer.lora_kernel_b
        b.assign(np.random.default_rng(3).normal(size=b.shape).astype("float32"))
    return document


@pytest.mark.parametrize("fmt", DEPLOYMENT)
def test_deployment_exports_merge_lora_adapters(lora_document, workdir, fmt):
    feeds = sample(lora_document)
    expected = keras_outputs(lora_document, feeds)
    values = {w.id: w.variable.numpy().copy() for w in lora_document.weights}
    out = workdir / f"lora_{fmt}{SUFFIX[fmt]}"
    report = export_document(lora_document, fmt, out)
    assert report.verified
    for got, want in zip(RUNNERS[fmt](out, feeds, output_names(lora_document)), expected,
                         strict=True):
        np.testing.assert_allclose(got, want, atol=TOL)
    assert not [name for _, name in NODES[fmt](out) if "lora" in name.lower()]
    if fmt == "savedmodel":
        assert not [v.name for v in tf.saved_model.load(str(out)).variables if "lora" in v.name]
    # the document keeps its adapters, unchanged
    assert len(lora_document.adapters()) == 3
    assert all(np.array_equal(values[w.id], w.variable.numpy()) for w in lora_document.weights)
    np.testing.assert_array_equal(keras_outputs(lora_document, feeds)[0], expected[0])
