"""Generic SavedModels (no Keras layers) export through their serving signature."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from freezestudio.core.errors import UserError  # noqa: E402
from freezestudio.core.export import available_formats, export_document  # noqa: E402
from freezestudio.core.loading import open_document  # noqa: E402

SUFFIX = {"savedmodel": "", "tflite": ".tflite", "onnx": ".onnx", "frozen-graph": ".pb"}


class Scorer(tf.Module):
    def __init__(self):
        super().__init__()
        rng = np.random.default_rng(0)
        with tf.name_scope("dense"):
            self.kernel = tf.Variable(rng.standard_normal((4, 3)).astype("float32"),
                                      name="kernel")
            self.bias = tf.Variable(rng.standard_normal(3).astype("float32"), name="bias")

    @tf.function(input_signature=[tf.TensorSpec((None, 4), tf.float32, name="features")])
    def serve(self, features):
        scores = tf.nn.relu(tf.matmul(features, self.kernel) + self.bias)
        return {"scores": scores, "total": tf.reduce_sum(scores, axis=1, keepdims=True)}


@pytest.fixture(scope="module")
def document(tmp_path_factory):
    path = tmp_path_factory.mktemp("generic") / "scorer"
    module = Scorer()
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
    return open_document(path)


def test_only_deployment_formats_are_offered(document, tmp_path):
    assert available_formats(document) == ["savedmodel", "tflite", "onnx", "frozen-graph"]
    with pytest.raises(UserError, match="generic SavedModel has no Keras layers"):
        export_document(document, "keras", tmp_path / "m.keras")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("fmt", list(SUFFIX))
def test_generic_savedmodel_exports_and_verifies(document, tmp_path, fmt):
    out = tmp_path / f"scorer{SUFFIX[fmt]}"
    report = export_document(document, fmt, out)
    assert report.verified and report.ok
    assert [c.output for c in report.checks] == ["scores", "total"]
    assert report.max_abs_diff < 1e-5
    if fmt == "savedmodel":
        signature = tf.saved_model.load(str(out)).signatures["serving_default"]
        features = np.ones((2, 4), "float32")
        expected = document.model.signatures["serving_default"](features=features)
        np.testing.assert_allclose(signature(features=features)["total"].numpy(),
                                   expected["total"].numpy(), atol=1e-6)
