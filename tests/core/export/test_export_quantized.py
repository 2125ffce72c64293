"""Quantised TFLite/ONNX exports of a CNN trained here, calibrated and verified on its data.

The oracle is LiteRT's interpreter (or onnxruntime) run by the test itself against the
Keras model's own predictions; sizes are the files on disk.
"""

import model_builders as mb
import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter

from freezestudio.core.errors import UserError
from freezestudio.core.export import ExportCancelled, ExportOptions, export_document
from freezestudio.core.export.samples import read_samples
from freezestudio.core.files.loading import open_document


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The trained CNN's document, its data file and its held-out rows."""
    folder = tmp_path_factory.mktemp("quantized")
    model, path, data, x_val, y_val = mb.trained_cnn_files(folder, 600, 300)
    assert np.mean(np.argmax(model.predict(x_val, verbose=0), 1) == y_val) >= 0.97
    return open_document(path), data, x_val, y_val, folder


@pytest.fixture(scope="module")
def exported(trained):
    document, data, *_, folder = trained
    verification = read_samples(document, data, limit=1000, held_out=True)
    calibration = read_samples(document, data, limit=300, held_out=False)
    cache = {}

    def get(mode, io_type="float32", fmt="tflite"):
        key = (mode, io_type, fmt)
        if key not in cache:
            out = folder / f"cnn_{mode}_{io_type}.{fmt}"
            options = ExportOptions(quantize=mode, io_type=io_type, verification=verification,
                                    calibration=calibration if mode == "int8" else None)
            cache[key] = (export_document(document, fmt, out, options), out)
        return cache[key]

    return get


def litert_outputs(path, x):
    """Runs the file with LiteRT, quantising float input/dequantising output itself."""
    runner = Interpreter(model_path=str(path)).get_signature_runner("serving_default")
    detail = runner.get_input_details()["image"]
    if detail["dtype"] == np.int8:
        scale, zero = detail["quantization"]
        x = np.clip(np.round(x / scale + zero), -128, 127).astype(np.int8)
    out = runner(image=x)["probs"]
    detail = runner.get_output_details()["probs"]
    if detail["dtype"] == np.int8:
        scale, zero = detail["quantization"]
        out = (out.astype(np.float32) - zero) * scale
    return out


@pytest.mark.parametrize("mode, io_type, ratio, floor", [
    ("dynamic", "float32", 0.4, 0.97),
    ("float16", "float32", 0.6, 0.99),
    ("int8", "float32", 0.4, 0.95),
    ("int8", "int8", 0.4, 0.95),
])
def test_quantized_tflite_is_small_and_agrees_on_held_out_data(trained, exported, mode,
                                                              io_type, ratio, floor):
    document, _, x_val, y_val, _ = trained
    report, path = exported(mode, io_type)
    float_report, float_path = exported(None)
    assert path.stat().st_size <= ratio * float_path.stat().st_size
    assert report.float_bytes == float_path.stat().st_size
    expected = document.model.predict(x_val, verbose=0)
    got = litert_outputs(path, x_val)
    agreement = float(np.mean(np.argmax(got, 1) == np.argmax(expected, 1)))
    assert agreement >= floor
    check, = report.checks
    assert check.top1_agreement == pytest.approx(agreement, abs=1e-12)
    assert check.min_agreement == floor and check.limit is None
    assert check.accuracy == pytest.approx(float(np.mean(np.argmax(got, 1) == y_val)))
    assert report.samples == len(x_val) and "validation rows" in report.samples_source
    summary = report.to_json()
    assert summary["quantization"] == mode and summary["top1_agreement"] == check.top1_agreement
    assert summary["bytes"] == path.stat().st_size


def test_float_export_is_checked_against_the_tolerance_and_reports_agreement(exported):
    report, _ = exported(None)
    check, = report.checks
    assert check.limit is not None and check.ok and check.top1_agreement == 1.0
    assert report.quantization is None and report.float_bytes is None


@pytest.mark.parametrize("io_type", ["float32", "int8"])
def test_int8_model_computes_in_int8(exported, io_type):
    _, path = exported("int8", io_type)
    interpreter = Interpreter(model_path=str(path))
    tensors = interpreter.get_tensor_details()
    weights_and_activations = [t for t in tensors if t["dtype"] != np.int32]  # int32: biases
    int8 = [t for t in weights_and_activations if t["dtype"] == np.int8]
    assert len(int8) >= 0.8 * len(weights_and_activations)
    io = interpreter.get_input_details() + interpreter.get_output_details()
    assert {d["dtype"] for d in io} == {np.int8 if io_type == "int8" else np.float32}


def test_onnx_dynamic_int8_is_smaller_and_agrees(trained, exported):
    import onnxruntime

    document, _, x_val, _, _ = trained
    report, path = exported("dynamic", fmt="onnx")
    float_report, float_path = exported(None, fmt="onnx")
    assert path.stat().st_size <= 0.4 * float_path.stat().st_size
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(["probs"], {"image": x_val})[0]
    expected = document.model.predict(x_val, verbose=0)
    agreement = float(np.mean(np.argmax(got, 1) == np.argmax(expected, 1)))
    assert agreement >= 0.97
    assert report.checks[0].top1_agreement == pytest.approx(agreement, abs=1e-12)
    ops = {node.op_type for node in __import__("onnx").load(str(path)).graph.node}
    assert ops & {"DynamicQuantizeLinear", "ConvInteger", "MatMulInteger"}


def test_int8_without_calibration_is_refused_and_writes_nothing(trained):
    document, *_, folder = trained
    out = folder / "uncalibrated.tflite"
    with pytest.raises(UserError, match="int8 quantisation needs calibration data"):
        export_document(document, "tflite", out, ExportOptions(quantize="int8"))
    assert not out.exists()


def test_a_quantized_export_below_the_agreement_floor_fails_and_writes_nothing(trained):
    """Near-tied class probabilities (the output layer scaled down 1e-4) collapse onto
    one int8 step: the int8 export loses the arg-max on most rows and is refused."""
    import keras

    from freezestudio.core.export import VerificationError

    document, data, x_val, _, folder = trained
    model = keras.models.clone_model(document.model)
    model.set_weights(document.model.get_weights())
    kernel, bias = model.get_layer("probs").get_weights()
    model.get_layer("probs").set_weights([kernel * 1e-4, bias * 1e-4])
    model.save(folder / "ties.keras")
    ties = open_document(folder / "ties.keras")
    out = folder / "ties.tflite"
    out.write_bytes(b"earlier file")
    options = ExportOptions(quantize="int8", calibration=read_samples(
        ties, data, limit=100, held_out=False), verification=read_samples(
        ties, data, limit=300, held_out=True))
    with pytest.raises(VerificationError, match="--min-agreement") as caught:
        export_document(ties, "tflite", out, options)
    check, = caught.value.report.checks
    assert check.top1_agreement < 0.95 and not check.ok
    assert out.read_bytes() == b"earlier file"
    assert [p.name for p in folder.iterdir() if p.name.startswith(".")] == []


def test_cancel_during_calibration_leaves_no_file(trained):
    document, data, *_, folder = trained
    calibration = read_samples(document, data, limit=100, held_out=False)
    messages = []

    def cancelled():
        return any("calibrating" in m for m in messages)

    out = folder / "cancelled.tflite"
    with pytest.raises(ExportCancelled):
        export_document(document, "tflite", out,
                        ExportOptions(quantize="int8", calibration=calibration),
                        progress=lambda f, m: messages.append(m), cancelled=cancelled)
    assert not out.exists()
    assert [p.name for p in folder.iterdir() if p.name.startswith(".")] == []


def test_text_classifier_demo_exports_int8_with_token_inputs(tmp_path):
    """The demo's integer token input stays int32; its embedding and dense layers go int8."""
    from freezestudio.resources import demo_file

    document = open_document(demo_file("text_classifier.keras"))
    samples = read_samples(document, "demo", limit=200, held_out=False,
                           model_path=demo_file("text_classifier.keras"))
    held_out = read_samples(document, "demo", limit=400, held_out=True,
                            model_path=demo_file("text_classifier.keras"))
    out = tmp_path / "text.tflite"
    report = export_document(document, "tflite", out, ExportOptions(
        quantize="int8", io_type="int8", calibration=samples, verification=held_out))
    assert report.ok and report.checks[0].top1_agreement >= 0.95
    interpreter = Interpreter(model_path=str(out))
    assert interpreter.get_input_details()[0]["dtype"] == np.int32
    assert interpreter.get_output_details()[0]["dtype"] == np.int8
    assert out.stat().st_size <= 0.4 * report.float_bytes
