"""Config-first opening: a `.keras` read from its config and weight shapes gives exactly
the document of a full load (the full load is the oracle), without TensorFlow; files the
config cannot describe fall back to the full load."""

from __future__ import annotations

import json
import subprocess
import sys

import keras
import model_builders as mb
import pytest

from freezestudio.core.edits.plans import Plan, Rule, apply_plan
from freezestudio.core.files.loading import open_described_document, open_document
from freezestudio.core.files.saving import save_document
from freezestudio.core.model.summary import document_dict, document_text

DESCRIBABLE = {
    "mobilenet_v2": mb.mobilenet_v2,
    "efficientnet_b0": mb.keras_application("EfficientNetB0"),
    "mobilenet_v2_transfer": mb.mobilenet_v2_transfer,
    "sequential_with_backbone": mb.sequential_with_backbone,
    "functional_with_backbone": mb.functional_with_backbone,
    "sequential_in_sequential_cnn": mb.sequential_in_sequential_cnn,
    "nested_sequential": mb.nested_sequential,
    "shared_two_outputs": mb.shared_two_outputs,
    "shared_two_inputs_one_output": mb.shared_two_inputs_one_output,
    "dict_model": mb.dict_model,
    "gradient_norms_model": mb.gradient_norms_model,
}


def _both(path):
    described = open_described_document(path)
    assert described is not None, "the config reader gave way on a describable file"
    return described, open_document(path)


def _assert_same(described, loaded):
    assert document_text(described, show_weights=True) == \
        document_text(loaded, show_weights=True)
    assert json.dumps(document_dict(described)) == json.dumps(document_dict(loaded))
    assert described.stop_points == loaded.stop_points
    assert described.compile_config == loaded.compile_config


@pytest.mark.parametrize("name", list(DESCRIBABLE))
def test_described_document_equals_the_loaded_one(tmp_path, name):
    model = DESCRIBABLE[name]()
    path = tmp_path / f"{name}.keras"
    model.save(path)
    _assert_same(*_both(path))


def _edited_file(tmp_path, build, rules, points):
    """A file FreezeStudio saved with per-weight freezes and stop-gradient points."""
    source = tmp_path / "source.keras"
    build().save(source)
    document = open_document(source)
    apply_plan(document, Plan(trainable=[Rule(m, v) for m, v in rules],
                              stop_gradient_after=list(points)))
    target = tmp_path / "edited.keras"
    save_document(document, target)
    return target


def test_stop_gradient_points_and_per_weight_freezes_survive(tmp_path):
    path = _edited_file(tmp_path, mb.shared_two_inputs_one_output,
                        [("shared:bias", False), ("out", False), ("out:kernel", True)],
                        ["shared[1]"])
    described, loaded = _both(path)
    assert loaded.stop_points == ["shared[1]"]
    _assert_same(described, loaded)


def test_points_inside_nested_models_and_frozen_containers(tmp_path):
    path = _edited_file(tmp_path, mb.mobilenet_v2_transfer,
                        [("mobilenetv2_0.35_32", False), ("mobilenetv2_0.35_32/block_16_*", True),
                         ("mobilenetv2_0.35_32/Conv1:kernel", True)],
                        ["mobilenetv2_0.35_32/block_6_project_BN", "gap"])
    described, loaded = _both(path)
    assert len(loaded.stop_points) == 2
    _assert_same(described, loaded)


def test_layer_flags_set_in_plain_keras_survive(tmp_path):
    model = mb.functional_with_backbone()
    model.get_layer("backbone").trainable = False
    model.get_layer("backbone").get_layer("conv").trainable = True
    model.get_layer("head_dropout").trainable = False
    path = tmp_path / "flags.keras"
    model.save(path)
    _assert_same(*_both(path))


def test_edits_on_a_described_document_equal_edits_on_the_loaded_one(tmp_path):
    path = tmp_path / "m.keras"
    mb.gradient_norms_model().save(path)
    described, loaded = _both(path)
    for document in (described, loaded):
        apply_plan(document, Plan(trainable=[Rule("side", False)],
                                  stop_gradient_after=["bn"]))
    _assert_same(described, loaded)
    assert described.receives_gradient(described.layer("a")) is False


@pytest.mark.parametrize("build", [mb.custom_layer_model, mb.subclassed_around_functional,
                                   mb.attention_model, mb.shared_on_one_input_with_argmax])
def test_files_the_config_cannot_describe_fall_back(tmp_path, build):
    path = tmp_path / "m.keras"
    build().save(path)
    assert open_described_document(path) is None


def test_h5_files_fall_back(tmp_path):
    path = tmp_path / "m.h5"
    mb.two_dense_sequential().save(path)
    assert open_described_document(path) is None


def test_a_layer_shared_between_nested_models_falls_back(tmp_path):
    inputs = keras.Input((4,), name="x")
    shared = keras.layers.Dense(4, name="shared")
    inner_in = keras.Input((4,))
    inner = keras.Model(inner_in, shared(inner_in), name="inner")
    model = keras.Model(inputs, keras.layers.Add()([inner(inputs), shared(inputs)]))
    path = tmp_path / "m.keras"
    model.save(path)
    assert open_described_document(path) is None


_NO_TF = """
import sys
from freezestudio.cli import main
code = main(["inspect", sys.argv[1], "--json"])
loaded = sorted(m for m in ("tensorflow", "keras", "jax", "torch") if m in sys.modules)
print("LOADED", loaded, code, file=sys.stderr)
"""


def test_inspect_reads_a_keras_file_without_tensorflow(tmp_path):
    path = _edited_file(tmp_path, mb.mobilenet_v2_transfer,
                        [("mobilenetv2_0.35_32/bn_Conv1:beta", False)],
                        ["mobilenetv2_0.35_32/block_2_add"])
    done = subprocess.run([sys.executable, "-c", _NO_TF, str(path)], capture_output=True,
                          text=True, timeout=120)
    assert "LOADED [] 0" in done.stderr, done.stderr
    assert json.loads(done.stdout) == document_dict(open_document(path))


def test_inspect_of_a_file_it_cannot_describe_loads_the_model(tmp_path):
    path = tmp_path / "attention.keras"
    mb.attention_model().save(path)
    done = subprocess.run([sys.executable, "-c", _NO_TF, str(path)], capture_output=True,
                          text=True, timeout=120)
    assert "'keras', 'tensorflow'" in done.stderr, done.stderr
    assert json.loads(done.stdout) == document_dict(open_document(path))
