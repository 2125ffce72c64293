"""The public command line contract of docs/architecture.md: inspect --json, apply, errors."""

import json
from fnmatch import fnmatchcase

import keras
import model_builders as mb
import pytest
import tensorflow as tf
from cli_runner import assert_user_error, run_many

from freezestudio.resources import DEMO_DIR

NODE_KEYS = {"path", "name", "class", "trainable", "receives_gradient", "stop_gradient_after",
             "params", "trainable_params", "weights", "children"}
WEIGHT_KEYS = {"id", "shape", "dtype", "trainable", "receives_gradient"}
TOTAL_KEYS = {"params", "trainable_params", "non_trainable_params", "receiving_gradient_params"}

LAYER_EDITS = ["--freeze", "backbone", "--unfreeze", "backbone/conv"]


def walk(node):
    yield node
    for child in node["children"]:
        yield from walk(child)


def parse_json(run):
    assert run.returncode == 0, run.stderr[-2000:]
    return json.loads(run.stdout)  # exactly one JSON object on stdout


@pytest.fixture(scope="module")
def cli(tmp_path_factory):
    folder = tmp_path_factory.mktemp("contract")
    source = folder / "model.keras"
    mb.sequential_with_backbone().save(source)
    plan = folder / "plan.json"
    plan.write_text(json.dumps({"freezestudio_plan": 1, "trainable": [
        {"match": "backbone", "value": False},
        {"match": "backbone/b*", "value": True},
        {"match": "head:bias", "value": False},
    ], "stop_gradient_after": []}))
    generic = folder / "generic"
    module = mb.ScopedModule()
    tf.saved_model.save(module, str(generic), signatures={"serving_default": module.__call__})
    jobs = {
        "apply_generic": ["apply", generic, "--freeze", "encoder", "-o", folder / "generic_out"],
        "inspect_plain": ["inspect", source, "--json"],
        "inspect_text": ["inspect", source],
        "inspect_edited": ["inspect", source, "--json", *LAYER_EDITS],
        "apply_flags": ["apply", source, *LAYER_EDITS, "-o", folder / "flags.keras"],
        "apply_plan": ["apply", source, "--plan", plan, "-o", folder / "plan.keras"],
        "apply_h5": ["apply", source, "--freeze", "backbone/bn", "-o", folder / "bn.h5"],
        "apply_no_match": ["apply", source, "--freeze", "backbone/con",
                           "-o", folder / "never.keras"],
        "apply_bad_output": ["apply", source, "-o", folder / "out.txt"],
    }
    first = dict(zip(jobs, run_many(list(jobs.values())), strict=True))
    second = {
        "inspect_flags_out": ["inspect", folder / "flags.keras", "--json"],
        "inspect_plan_out": ["inspect", folder / "plan.keras", "--json"],
        "inspect_generic_out": ["inspect", folder / "generic_out", "--json"],
    }
    first.update(zip(second, run_many(list(second.values())), strict=True))
    return folder, source, first


def test_inspect_json_shape(cli):
    folder, source, runs = cli
    data = parse_json(runs["inspect_plain"])
    assert set(data) == {"file", "format", "model", "totals"}
    assert data["file"] == str(source)
    assert data["format"] == "keras"
    assert set(data["totals"]) == TOTAL_KEYS
    assert all(isinstance(v, int) for v in data["totals"].values())
    for node in walk(data["model"]):
        assert set(node) == NODE_KEYS, node["path"]
        assert node["trainable"] in (True, False, "partial")
        assert node["receives_gradient"] in (True, False, "partial")
        assert isinstance(node["stop_gradient_after"], list)
        assert isinstance(node["params"], int) and isinstance(node["trainable_params"], int)
        assert node["path"].rsplit("/", 1)[-1] == node["name"] or node["path"] == ""
        for weight in node["weights"]:
            assert set(weight) == WEIGHT_KEYS
            assert weight["id"].startswith(node["path"] + ":")
            assert isinstance(weight["shape"], list)
            assert weight["trainable"] in (True, False)
            assert weight["receives_gradient"] in (True, False)
    assert data["model"]["path"] == ""


def test_inspect_json_matches_keras(cli):
    folder, source, runs = cli
    data = parse_json(runs["inspect_plain"])
    model = keras.saving.load_model(source, compile=False)
    by_path = {n["path"]: n for n in walk(data["model"])}
    layers = mb.keras_layer_paths(model)
    assert set(by_path) == set(layers) | {""}
    for path, layer in {**layers, "": model}.items():
        params, trainable = mb.layer_params(layer)
        assert (by_path[path]["params"], by_path[path]["trainable_params"]) == (
            params, trainable), path
        assert by_path[path]["class"] == type(layer).__name__
    totals = data["totals"]
    assert totals["params"] == model.count_params()
    assert totals["trainable_params"] == mb.size(model.trainable_weights)
    assert totals["non_trainable_params"] == mb.size(model.non_trainable_weights)
    assert totals["receiving_gradient_params"] == totals["trainable_params"]
    ids = [w["id"] for n in walk(data["model"]) for w in n["weights"]]
    assert len(ids) == len(set(ids)) == len(model.weights)


def test_inspect_text(cli):
    _, _, runs = cli
    run = runs["inspect_text"]
    assert run.returncode == 0, run.stderr[-2000:]
    for name in ("backbone", "conv", "bn", "head"):
        assert name in run.stdout
    assert "Total params: 143" in run.stdout


def test_apply_flags_then_plain_keras_agrees(cli):
    folder, source, runs = cli
    assert runs["apply_flags"].returncode == 0, runs["apply_flags"].stderr[-2000:]
    assert "note:" not in runs["apply_flags"].stdout
    out = keras.saving.load_model(folder / "flags.keras", compile=False)
    # Oracle: the same edit with Keras's own flags.
    oracle = keras.saving.load_model(source, compile=False)
    for layer in oracle.get_layer("backbone").layers:
        layer.trainable = layer.name == "conv"
    assert mb.trainable_indices(out) == mb.trainable_indices(oracle)
    # inspect --json on the input with the same edits, and on the output, count what Keras
    # counts for the saved result.
    keras_count = mb.size(out.trainable_weights)
    assert parse_json(runs["inspect_edited"])["totals"]["trainable_params"] == keras_count
    data = parse_json(runs["inspect_flags_out"])
    assert data["totals"]["trainable_params"] == keras_count
    by_path = {n["path"]: n for n in walk(data["model"])}
    assert by_path["backbone"]["trainable"] == "partial"
    assert by_path["backbone/bn"]["trainable"] is False
    assert by_path["backbone/conv"]["trainable"] is True


def test_apply_plan(cli):
    folder, source, runs = cli
    run = runs["apply_plan"]
    assert run.returncode == 0, run.stderr[-2000:]
    assert "head:bias" in run.stdout  # the per-weight freeze is reported as a note
    out = keras.saving.load_model(folder / "plan.keras", compile=False)
    oracle = keras.saving.load_model(source, compile=False)
    for layer in oracle.get_layer("backbone").layers:
        layer.trainable = fnmatchcase(layer.name, "b*")
    # Plain Keras cannot keep the lone bias freeze: apart from it, it trains the same.
    assert mb.trainable_indices(out) == mb.trainable_indices(oracle)
    data = parse_json(runs["inspect_plan_out"])
    head = next(n for n in walk(data["model"]) if n["path"] == "head")
    assert {w["id"]: w["trainable"] for w in head["weights"]} == {
        "head:kernel": True, "head:bias": False}
    assert data["totals"]["trainable_params"] == mb.size(out.trainable_weights) - 3
    assert data["format"] == "keras"


def test_apply_to_h5(cli):
    folder, source, runs = cli
    assert runs["apply_h5"].returncode == 0, runs["apply_h5"].stderr[-2000:]
    out = keras.saving.load_model(folder / "bn.h5", compile=False)
    oracle = keras.saving.load_model(source, compile=False)
    oracle.get_layer("backbone").get_layer("bn").trainable = False
    assert mb.trainable_indices(out) == mb.trainable_indices(oracle)
    assert f"{mb.size(out.trainable_weights)} of 143 params trainable" in runs["apply_h5"].stdout


def test_pattern_matching_nothing_is_exit_2(cli):
    folder, _, runs = cli
    assert_user_error(runs["apply_no_match"], "backbone/con", "backbone/conv")
    assert not (folder / "never.keras").exists()


def test_apply_to_unsupported_output_is_exit_2(cli):
    folder, _, runs = cli
    assert_user_error(runs["apply_bad_output"], "out.txt")
    assert not (folder / "out.txt").exists()


def test_apply_and_inspect_generic_savedmodel(cli):
    folder, _, runs = cli
    assert runs["apply_generic"].returncode == 0, runs["apply_generic"].stderr[-2000:]
    data = parse_json(runs["inspect_generic_out"])
    assert data["format"] == "savedmodel"
    by_path = {n["path"]: n for n in walk(data["model"])}
    assert by_path["encoder"]["trainable"] is False
    assert by_path["head"]["trainable"] is True
    assert data["totals"] == {"params": 9, "trainable_params": 3, "non_trainable_params": 6,
                              "receiving_gradient_params": 3}
    loaded = tf.saved_model.load(str(folder / "generic_out"))
    assert (loaded.kernel.trainable, loaded.head.trainable) == (False, True)
    out = loaded.signatures["serving_default"](x=tf.ones((1, 2)))
    assert float(next(iter(out.values())).numpy()[0, 0]) == 6.0


def test_freeze_and_unfreeze_apply_in_command_line_order(tmp_path):
    """--freeze/--unfreeze are rules like a plan's: the later one wins."""
    from freezestudio.cli import _command_modules, build_parser
    from freezestudio.commands.common import open_edited_document

    demo = DEMO_DIR / "cnn_transfer.keras"
    parser = build_parser(_command_modules())
    frozen_last = open_edited_document(parser.parse_args(
        ["inspect", str(demo), "--unfreeze", "*", "--freeze", "conv_base"]))
    unfrozen_last = open_edited_document(parser.parse_args(
        ["inspect", str(demo), "--freeze", "conv_base", "--unfreeze", "*"]))
    assert frozen_last.trainable_state(frozen_last.layer("conv_base")) is False
    assert unfrozen_last.trainable_state(unfrozen_last.layer("conv_base")) is True
