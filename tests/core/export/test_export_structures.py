"""Input/output structures the deployment model must keep: dict inputs and outputs, a
stop-gradient on an output layer, a Sequential model, unusual names."""

import keras
import model_builders as mb
import numpy as np
import pytest

from freezestudio.core.edits.stop_gradient import add_stop_gradient_points
from freezestudio.core.export import ExportOptions, export_document, verify
from freezestudio.core.export.inference_model import deployment_model
from freezestudio.core.files.loading import open_document

FORMATS = {"savedmodel": "", "tflite": ".tflite", "onnx": ".onnx", "frozen-graph": ".pb"}


@pytest.fixture(scope="module")
def documents(tmp_path_factory):
    folder = tmp_path_factory.mktemp("structures")
    found = {}
    for name, build in [("dicts", mb.dict_model), ("odd", mb.odd_names_model),
                        ("seq", mb.two_dense_sequential),
                        ("stop_on_output", lambda: keras.models.clone_model(mb.dict_model()))]:
        path = folder / f"{name}.keras"
        build().save(path)
        found[name] = open_document(path)
    add_stop_gradient_points(found["stop_on_output"], ["class_head", "merge"])
    return found


def test_names_of_the_deployment_model(documents):
    dicts = deployment_model(documents["dicts"])
    assert dicts.input_names == ["count", "image"]  # flattened dict order
    assert dicts.output_names == ["class", "score"]
    assert dicts.hints.int_bounds == {"count": 5}
    odd = deployment_model(documents["odd"])
    assert odd.input_names == ["x_in_put"] and odd.output_names == ["dense.out"]
    assert deployment_model(documents["seq"]).output_names == ["d2"]


@pytest.mark.parametrize("fmt", list(FORMATS))
@pytest.mark.parametrize("name", ["dicts", "odd", "seq", "stop_on_output"])
def test_structures_export_and_verify(documents, tmp_path, name, fmt):
    report = export_document(documents[name], fmt, tmp_path / f"m{FORMATS[fmt]}")
    assert report.verified and report.ok
    assert report.max_abs_diff < 1e-5


def test_stop_gradient_on_an_output_keeps_the_output_name(documents):
    document = documents["stop_on_output"]
    assert document.stop_points == ["merge", "class_head"]
    assert deployment_model(document).output_names == ["class", "score"]
    inputs = {"image": np.ones((2, 4), "float32"), "count": np.array([[1], [4]], "int32")}
    reference = document.model(inputs, training=False)
    exported = deployment_model(document).predict(inputs)
    np.testing.assert_array_equal(exported[0], np.asarray(reference["class"]))


def test_masked_token_inputs_are_verified_with_padded_rows(tmp_path):
    """Random ids alone almost never hold the padding 0, so a wrong export of a masked
    model (a TFLite masked bidirectional LSTM) passed its verification."""
    tokens = keras.Input((12,), dtype="int32", name="tokens")
    x = keras.layers.Embedding(30, 4, mask_zero=True, name="embedding")(tokens)
    out = keras.layers.Dense(2, name="out")(keras.layers.LSTM(3, name="lstm")(x))
    keras.Model(tokens, out).save(tmp_path / "masked.keras")
    document = open_document(tmp_path / "masked.keras")
    feeds = verify.verification_inputs(deployment_model(document),
                                       ExportOptions(batch_size=8))["tokens"]
    present = feeds != 0
    assert present[0].all() and not present.all()  # a full row, and padded ones
    assert (np.diff(present.astype(int), axis=1) <= 0).all()  # zeros only as a tail
    assert feeds.max() < 30
    report = export_document(document, "savedmodel", tmp_path / "served")
    assert all(check.ok for check in report.checks)
