"""A model that reads raw text (TextVectorization): exports that can hold it are verified
with random texts made of its vocabulary; the others say why they cannot, and write
nothing."""

import model_builders as mb
import numpy as np
import pytest
import tensorflow as tf

from freezestudio.core.errors import UserError
from freezestudio.core.export import ExportOptions, export_document, verify
from freezestudio.core.export.inference_model import deployment_model
from freezestudio.core.files.loading import open_document
from freezestudio.core.files.saving import save_document

CORPUS = ["the cat sat", "a dog ran far", "the dog sat on the mat", "cats and dogs"]


@pytest.fixture(scope="module")
def document(tmp_path_factory):
    model = mb.text_vectorization_reader(CORPUS)
    path = tmp_path_factory.mktemp("text") / "reader.keras"
    model.save(path)
    return open_document(path)


def test_random_texts_are_made_of_the_vocabulary(document):
    inference = deployment_model(document)
    vocabulary = set(document.model.get_layer("vectorize").get_vocabulary())
    feeds = verify.verification_inputs(inference, ExportOptions(batch_size=16))
    words = {w for text in feeds["text"].ravel() for w in text.split()}
    assert feeds["text"].shape == (16, 1)
    assert words - vocabulary == {"zzunknownzz"} and len(words & vocabulary) > 3


@pytest.mark.parametrize("fmt, name", [("keras", "copy.keras"), ("savedmodel", "served")])
def test_formats_that_hold_the_vocabulary_are_verified(document, tmp_path, fmt, name):
    report = export_document(document, fmt, tmp_path / name)
    assert report.checks and all(check.ok for check in report.checks)
    if fmt == "savedmodel":  # independently of the verification: real text, TF's loader
        served = tf.saved_model.load(str(tmp_path / name)).signatures["serving_default"]
        texts = tf.constant([["the cat sat on the mat"], ["unheard words"]])
        got = list(served(text=texts).values())[0].numpy()
        np.testing.assert_allclose(got, document.model(texts).numpy(), atol=1e-6)


@pytest.mark.parametrize("fmt, name, message", [
    ("h5", "copy.h5", "the legacy .h5 format cannot hold the vocabulary/assets of "
                      "'vectorize' (TextVectorization)"),
    ("tflite", "m.tflite", "TFLite's built-in op set lacks"),
    ("onnx", "m.onnx", "tf2onnx cannot convert the TensorFlow op StaticRegexReplace in "
                       "'vectorize' (TextVectorization)"),
    ("frozen-graph", "m.pb", "a frozen graph cannot hold 1 resource(s)"),
])
def test_formats_that_cannot_hold_it_say_why_and_write_nothing(document, tmp_path, fmt,
                                                                name, message):
    with pytest.raises(UserError) as error:
        export_document(document, fmt, tmp_path / name)
    assert message in str(error.value)
    assert list(tmp_path.iterdir()) == []


def test_saving_as_h5_is_refused_and_the_original_kept(document, tmp_path):
    (tmp_path / "old.h5").write_bytes(b"an older file")
    with pytest.raises(UserError, match="cannot hold the vocabulary"):
        save_document(document, tmp_path / "old.h5")
    assert (tmp_path / "old.h5").read_bytes() == b"an older file"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.h5"]
