"""ONNX exports of what tf2onnx cannot convert: the error names the layer and the TensorFlow
function it left in the graph, and the formats that work; nothing is written.

Keras's TensorFlow backend runs a convolution with groups > 1 (ConvNeXt's "depthwise" convs)
as a `tf.function(jit_compile=True)`, which tf2onnx leaves as a StatefulPartitionedCall."""

import model_builders as mb
import pytest

from freezestudio.core.errors import UserError
from freezestudio.core.export import ExportOptions, export_document
from freezestudio.core.files.loading import open_document


def _document(tmp_path, build):
    path = tmp_path / "source" / "model.keras"
    path.parent.mkdir()
    build().save(path)
    return open_document(path)


@pytest.mark.parametrize("verify", [True, False])
def test_grouped_convolution_names_the_layer_and_working_formats(tmp_path, verify):
    document = _document(tmp_path, mb.grouped_conv_model)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(UserError) as info:
        export_document(document, "onnx", out / "model.onnx", ExportOptions(verify=verify))
    message = str(info.value)
    assert "\n" not in message
    for fragment in ("'grouped' (Conv2D groups=4)", "_conv_xla", "StatefulPartitionedCall",
                     "savedmodel, tflite and frozen-graph"):
        assert fragment in message, (fragment, message)
    assert list(out.iterdir()) == []  # not even with --no-verify


def test_the_formats_the_error_names_do_work(tmp_path):
    document = _document(tmp_path, mb.grouped_conv_model)
    for fmt, name in (("tflite", "m.tflite"), ("frozen-graph", "m.pb"),
                      ("savedmodel", "m_saved")):
        report = export_document(document, fmt, tmp_path / name)
        assert report.verified and report.ok, fmt


@pytest.mark.slow
def test_convnext_tiny_names_its_grouped_convolutions(tmp_path):
    document = _document(tmp_path, mb.keras_application("ConvNeXtTiny"))
    with pytest.raises(UserError) as info:
        export_document(document, "onnx", tmp_path / "convnext.onnx",
                        ExportOptions(verify=False))
    message = str(info.value)
    assert "18 grouped convolution(s)" in message, message
    assert "stage_0_block_0_depthwise_conv' (Conv2D groups=96)" in message, message
