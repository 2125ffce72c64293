"""Calibration and verification data without labels, read from real files.

Calibration needs inputs only; verification without labels reports the top-1 agreement
but no accuracy. The oracles are the arrays the test wrote (and decodes itself) and
LiteRT run by the test against the Keras model.
"""

import model_builders as mb
import numpy as np
import pytest
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter

from freezestudio.core.data import load_data
from freezestudio.core.errors import UserError
from freezestudio.core.export import ExportOptions, export_document
from freezestudio.core.export.samples import read_samples
from freezestudio.core.files.loading import open_document
from freezestudio.core.model.signature import model_io


def write_image_folder(folder, x):
    """PNGs straight in `folder` (no class sub-folders); returns the pixels as written."""
    folder.mkdir()
    pixels = np.round(x * 255).astype(np.uint8)
    for i, image in enumerate(pixels):
        (folder / f"{i:03d}.png").write_bytes(tf.io.encode_png(image).numpy())
    return pixels


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("unlabelled")
    model, path, _, x_val, _ = mb.trained_cnn_files(folder, 300, 60)
    x, _ = mb.separable_images(300)
    np.savez(folder / "x_only.npz", x=x, x_val=x_val)
    np.save(folder / "inputs.npy", x_val)
    pixels = write_image_folder(folder / "images", x_val)
    return model, open_document(path), folder, x, x_val, pixels


@pytest.mark.parametrize("name, held_out", [("x_only.npz", False), ("x_only.npz", True),
                                            ("inputs.npy", True), ("images", True)])
def test_inputs_without_labels_are_read_as_samples(files, name, held_out):
    _, document, folder, x, x_val, pixels = files
    samples = read_samples(document, folder / name, limit=1000, held_out=held_out)
    assert samples.labels is None
    expected = x if name == "x_only.npz" and not held_out else x_val
    if name == "images":
        expected = pixels / 255.0
    np.testing.assert_allclose(samples.inputs[0], expected, atol=1e-6)


def test_int8_calibrated_and_verified_without_labels_reports_agreement_only(files):
    model, document, folder, _, x_val, _ = files
    options = ExportOptions(
        quantize="int8",
        calibration=read_samples(document, folder / "x_only.npz", limit=300, held_out=False),
        verification=read_samples(document, folder / "inputs.npy", limit=1000, held_out=True))
    out = folder / "int8.tflite"
    summary = export_document(document, "tflite", out, options).to_json()
    assert summary["accuracy"] is None and summary["model_accuracy"] is None
    got = Interpreter(model_path=str(out)).get_signature_runner("serving_default")(
        image=x_val)["probs"]
    want = model.predict(x_val, verbose=0)
    assert summary["top1_agreement"] == pytest.approx(
        np.mean(np.argmax(got, 1) == np.argmax(want, 1)))
    assert summary["samples"] == len(x_val) and summary["top1_agreement"] >= 0.95


def test_training_still_needs_labels(files):
    _, document, folder, *_ = files
    io = model_io(document)
    with pytest.raises(UserError, match="missing array 'y'"):
        load_data(folder / "x_only.npz", io)
    with pytest.raises(UserError, match="unsupported data"):
        load_data(folder / "inputs.npy", io)
    with pytest.raises(UserError, match="one sub-folder per class"):
        load_data(folder / "images", io)
