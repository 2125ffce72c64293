"""Stop-gradient points: insertion, removal, save/reload, portable saves, plans, CLI."""

import itertools
import json
import subprocess
import sys

import keras
import model_builders as mb
import numpy as np
import pytest

from freezestudio.core.edits import stop_gradient
from freezestudio.core.edits.plans import Plan, apply_plan, derive_plan
from freezestudio.core.errors import PlanError
from freezestudio.core.files.loading import open_document
from freezestudio.core.files.saving import save_document
from freezestudio.core.graph.gradient_flow import cuts_gradient
from freezestudio.core.model.summary import document_text


def outputs(model, x):
    return [np.asarray(o) for o in keras.tree.flatten(model(x, training=False))]


def all_points(document):
    table = stop_gradient.point_table(document)
    return [a for path, pts in table.items() for a in stop_gradient.point_addresses(path, len(pts))]


def weights_by_id(document):
    return {w.id: np.array(w.variable.numpy()) for w in document.weights}


def stop_layer_names(model):
    names = []
    for layer in model.layers:
        if cuts_gradient(layer):
            names.append(layer.name)
        names += stop_layer_names(layer) if hasattr(layer, "layers") else []
    return names


ARCHITECTURES = [
    pytest.param(lambda: mb.mobilenet_v2(32), id="mobilenetv2"),
    pytest.param(mb.text_lstm, id="embedding-lstm"),
    pytest.param(mb.shared_two_outputs, id="shared-two-outputs"),
    pytest.param(mb.nested_sequential, id="nested-sequential"),
    pytest.param(mb.sequential_with_backbone, id="sequential-around-functional"),
]


@pytest.mark.parametrize("build", ARCHITECTURES)
@pytest.mark.parametrize("fmt", [".keras", ".h5"])
def test_points_insert_save_reload_remove(build, fmt, tmp_path):
    original = build()
    source = tmp_path / "model.keras"
    original.save(source)
    x = mb.sample_input(original)
    reference = outputs(original, x)
    document = open_document(source)
    before = weights_by_id(document)
    rng = np.random.default_rng(0)
    points = list(rng.choice(all_points(document), size=3, replace=False))
    stop_gradient.add_stop_gradient_points(document, points)
    assert sorted(document.stop_points) == sorted(points)
    assert len(stop_layer_names(document.model)) == 3
    for got, want in zip(outputs(document.model, x), reference, strict=True):
        np.testing.assert_array_equal(got, want)

    target = tmp_path / f"edited{fmt}"
    save_document(document, target)
    reopened = open_document(target)
    assert sorted(reopened.stop_points) == sorted(points)
    assert not reopened.modified
    after = weights_by_id(reopened)
    assert before.keys() == after.keys()
    for weight_id, value in before.items():
        np.testing.assert_array_equal(after[weight_id], value, err_msg=weight_id)
    for got, want in zip(outputs(reopened.model, x), reference, strict=True):
        np.testing.assert_array_equal(got, want)

    stop_gradient.remove_stop_gradient_points(reopened, points)
    assert reopened.stop_points == []
    assert stop_layer_names(reopened.model) == []
    # Equivalent graph: the same layers (a Sequential that held points comes back as a
    # Functional model, which lists its InputLayer) and the same outputs.
    assert real_layer_names(reopened.model) == real_layer_names(keras.saving.load_model(source))
    for got, want in zip(outputs(reopened.model, x), reference, strict=True):
        np.testing.assert_array_equal(got, want)


def real_layer_names(model):
    return sorted(layer.name for layer in model.layers
                  if not isinstance(layer, keras.layers.InputLayer))


def test_points_keep_the_same_variables(tmp_path):
    path = tmp_path / "text.keras"
    mb.text_lstm().save(path)
    document = open_document(path)
    variables = {id(w.variable) for w in document.weights}
    stop_gradient.add_stop_gradient_points(document, all_points(document)[:2])
    assert {id(v) for v in document.model.weights} == variables


def test_layer_path_means_every_point_of_a_shared_layer(tmp_path):
    path = tmp_path / "shared.keras"
    mb.shared_two_outputs().save(path)
    document = open_document(path)
    shared = next(p for p, pts in stop_gradient.point_table(document).items() if len(pts) > 1)
    stop_gradient.add_stop_gradient_points(document, [shared])
    assert document.stop_points == [f"{shared}[0]", f"{shared}[1]"]
    names = [layer.name for layer in document.model.layers]
    assert len(names) == len(set(names))
    assert document.receives_gradient(document.layer(shared)) is False


def test_unknown_point_is_a_plan_error_with_suggestions(tmp_path):
    path = tmp_path / "text.keras"
    mb.text_lstm().save(path)
    document = open_document(path)
    some = all_points(document)[0]
    with pytest.raises(PlanError, match="closest"):
        stop_gradient.add_stop_gradient_points(document, [some + "x"])
    with pytest.raises(PlanError, match="point"):
        stop_gradient.add_stop_gradient_points(document, [some + "[7]"])


def test_plan_round_trip_and_undo_snapshot(tmp_path):
    path = tmp_path / "nested.keras"
    mb.nested_sequential().save(path)
    document = open_document(path)
    empty = document.snapshot()
    inner = [p for p in all_points(document) if "/" in p][:1]
    assert inner, "a nested Sequential has insertion points inside"
    stop_gradient.add_stop_gradient_points(document, inner)
    plan = derive_plan(document)
    assert plan.stop_gradient_after == inner
    replay = open_document(path)
    apply_plan(replay, Plan.from_dict(json.loads(json.dumps(plan.to_dict()))))
    assert replay.stop_points == inner
    edited = document.snapshot()
    document.restore(empty)
    assert document.stop_points == [] and stop_layer_names(document.model) == []
    document.restore(edited)
    assert document.stop_points == inner


def test_undo_redo_and_toggling_back_reuse_the_rebuilt_graph(tmp_path):
    path = tmp_path / "nested.keras"
    mb.nested_sequential().save(path)
    document = open_document(path)
    x = mb.sample_input(document.model)
    inner = [p for p in all_points(document) if "/" in p][:1]
    empty = document.snapshot()
    stop_gradient.add_stop_gradient_points(document, inner)
    edited, model = document.snapshot(), document.model
    containers = {n.path: n.layer for n in document.root.walk() if n.is_container}
    calls = {id(layer): len(layer._inbound_nodes) for layer in model._flatten_layers()}
    expected = outputs(model, x)
    document.restore(empty)
    assert document.model is document.base_layers[""]
    document.restore(edited)  # redo: the same objects, no layer called again
    assert document.model is model and document.stop_points == inner
    assert {n.path: n.layer for n in document.root.walk() if n.is_container} == containers
    assert {id(layer): len(layer._inbound_nodes) for layer in model._flatten_layers()} == calls
    assert document.receives_gradient(document.layer(inner[0].partition("[")[0])) is False
    stop_gradient.remove_stop_gradient_points(document, inner)
    stop_gradient.add_stop_gradient_points(document, inner)
    assert document.model is model
    for got, want in zip(outputs(document.model, x), expected, strict=True):
        np.testing.assert_array_equal(got, want)
    # at most REBUILT_GRAPHS_KEPT point sets are kept: the oldest is rebuilt afresh
    others = [list(c) for n in (1, 2) for c in itertools.combinations(all_points(document), n)
              if list(c) != inner]
    assert len(others) >= stop_gradient.REBUILT_GRAPHS_KEPT
    for points in others[:stop_gradient.REBUILT_GRAPHS_KEPT]:
        stop_gradient.set_stop_gradient_points(document, points)
    assert len(stop_gradient._cache(document).rebuilt) == stop_gradient.REBUILT_GRAPHS_KEPT
    stop_gradient.set_stop_gradient_points(document, inner)
    assert document.model is not model and stop_layer_names(document.model)
    for got, want in zip(outputs(document.model, x), expected, strict=True):
        np.testing.assert_array_equal(got, want)


def test_portable_save_drops_points_and_says_so(tmp_path):
    path = tmp_path / "text.keras"
    mb.text_lstm().save(path)
    document = open_document(path)
    first = all_points(document)[1]
    stop_gradient.add_stop_gradient_points(document, [first])
    document.set_trainable([document.layer(first)], False)
    report = save_document(document, tmp_path / "portable.keras", portable=True)
    assert any("dropped" in note for note in report.notes)
    assert document.stop_points == [first], "the document keeps its points"
    plain = subprocess.run(
        [sys.executable, "-c",
         "import keras,sys; m=keras.saving.load_model(sys.argv[1]);"
         "print(len(m.layers), sum(int(w.numpy().size) for w in m.trainable_weights))",
         str(tmp_path / "portable.keras")],
        capture_output=True, text=True, check=True)
    layers, trainable = plain.stdout.split()
    assert int(layers) == len(keras.saving.load_model(path).layers)
    assert int(trainable) == document.counts().trainable


def test_non_portable_save_needs_freezestudio_and_says_so(tmp_path):
    path = tmp_path / "text.keras"
    mb.text_lstm().save(path)
    document = open_document(path)
    stop_gradient.add_stop_gradient_points(document, all_points(document)[:1])
    report = save_document(document, tmp_path / "cut.keras")
    assert any("stop_gradient_layer" in note for note in report.notes)
    plain = subprocess.run(
        [sys.executable, "-c", "import keras,sys; keras.saving.load_model(sys.argv[1])",
         str(tmp_path / "cut.keras")], capture_output=True, text=True)
    assert plain.returncode != 0 and "StopGradient" in plain.stderr


class Block(keras.Model):
    """A subclassed model: its call is a Python function, not a layer graph."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.first = keras.layers.Dense(4, name="first")
        self.second = keras.layers.Dense(4, name="second")

    def call(self, x):
        return self.second(self.first(x))


def test_subclassed_model_boundary_is_a_point_its_inside_is_not(tmp_path):
    inp = keras.Input((3,), name="x")
    block = Block(name="block")
    out = keras.layers.Dense(1, name="head")(block(inp))
    model = keras.Model(inp, out)
    path = tmp_path / "sub.keras"
    model.save(path)
    document = open_document(path, custom_objects={"Block": Block})
    block_node = document.layer("block")
    assert stop_gradient.insertion_points(document, block_node) == ["block"]
    assert all(stop_gradient.insertion_points(document, c) == [] for c in block_node.children)
    assert document.receives_gradient(document.layer("block/first")) is True
    stop_gradient.add_stop_gradient_points(document, ["block"])
    assert document.receives_gradient(document.layer("block/first")) is False
    with pytest.raises(PlanError, match="subclassed"):
        stop_gradient.add_stop_gradient_points(document, ["block/first"])
    # inspect's text says so, on the subclassed block only
    marked = [line.split()[0] for line in document_text(document).splitlines()
              if "no stop-gradient points inside" in line]
    assert marked == ["block"]


def test_freeze_upstream_freezes_only_what_the_point_cuts(tmp_path):
    path = tmp_path / "shared.keras"
    mb.shared_two_outputs().save(path)
    document = open_document(path)
    point = all_points(document)[0]
    stop_gradient.add_stop_gradient_points(document, [point])
    stop_gradient.freeze_upstream(document, point)
    for node in document.root.walk():
        if not any(w.freezable for w in node.all_weights()) or node.is_container:
            continue
        if document.trainable_state(node) is False:
            assert document.flow_state(node) != "live", node.path
    assert document.receiving_params() == document.counts().trainable


def test_cli_stop_gradient_after(tmp_path):
    path = tmp_path / "text.keras"
    mb.text_lstm().save(path)
    point = all_points(open_document(path))[0]
    out = tmp_path / "out.keras"
    run = subprocess.run([sys.executable, "-m", "freezestudio", "apply", str(path), "-o",
                          str(out), "--stop-gradient-after", point],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    shown = subprocess.run([sys.executable, "-m", "freezestudio", "inspect", str(out), "--json"],
                           capture_output=True, text=True, check=True)
    tree = json.loads(shown.stdout)

    def find(node):
        if node["path"] == point:
            return node
        return next((f for c in node["children"] if (f := find(c))), None)

    assert find(tree["model"])["stop_gradient_after"] == [point]
    bad = subprocess.run([sys.executable, "-m", "freezestudio", "apply", str(path), "-o",
                          str(tmp_path / "x.keras"), "--stop-gradient-after", "nope"],
                         capture_output=True, text=True)
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines()[-1].startswith("freezestudio: error: ")
    assert "nope" in bad.stderr and "Traceback" not in bad.stderr


def test_cli_portable_copy_says_its_gradient_count_is_the_editors(tmp_path, capsys):
    from freezestudio.cli import main

    path = tmp_path / "text.keras"
    mb.text_lstm().save(path)
    assert main(["apply", str(path), "--stop-gradient-after", "embedding", "--portable",
                 "-o", str(tmp_path / "p.keras")]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first.endswith("receive gradient with the 1 stop-gradient point(s) this portable "
                          "copy drops")
    copy = open_document(tmp_path / "p.keras")  # the copy itself: every trainable weight
    assert copy.stop_points == [] and copy.receiving_params() == copy.counts().trainable
