"""The per-layer quantisation report (`ExportOptions.layer_report`) on a CNN trained here.

The oracle is the model's construction: one convolution is made hard to quantise by
weights of 1e4 on an input channel that is always zero (the float model computes the same,
but per-channel int8 weights of that range round every real weight of the layer to 0), so
that layer must rank worst; the ops listed are compared with the int8 ops of the exported
file itself, read with LiteRT's interpreter.
"""

import math

import keras
import model_builders as mb
import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter, OpResolverType

from freezestudio.core.errors import UserError
from freezestudio.core.export import ExportOptions, check_request, export_document
from freezestudio.core.export.samples import Samples
from freezestudio.core.files.loading import open_document

HARD = "hard_conv"


def images_with_a_dead_channel(count, seed):
    x, y = mb.separable_images(count, seed=seed)
    return np.concatenate([x, np.zeros(x.shape[:3] + (1,), "float32")], -1), y


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    folder = tmp_path_factory.mktemp("layer_report")
    x, y = images_with_a_dead_channel(300, 0)
    x_val, y_val = images_with_a_dead_channel(100, 1)
    keras.utils.set_random_seed(0)
    inputs = keras.Input(x.shape[1:], name="image")
    h = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv1")(inputs)
    h = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name=HARD)(h)
    h = keras.layers.MaxPooling2D(name="pool")(h)
    h = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv3")(h)
    h = keras.layers.GlobalAveragePooling2D(name="gap")(h)
    outputs = keras.layers.Dense(3, activation="softmax", name="probs")(h)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(x, y, epochs=3, batch_size=32, verbose=0)
    dead = keras.Model(inputs, model.get_layer("conv1").output).predict(x, verbose=0)
    channel = int(np.argmin(np.max(dead, axis=(0, 1, 2))))
    if np.max(dead[..., channel]) > 0:  # no channel of conv1 died: kill one
        kernel, bias = model.get_layer("conv1").get_weights()
        kernel[..., channel], bias[channel] = 0.0, -1.0
        model.get_layer("conv1").set_weights([kernel, bias])
    kernel, bias = model.get_layer(HARD).get_weights()
    kernel[:, :, channel, :] = 1e4  # multiplies zeros only: the float model is unchanged
    model.get_layer(HARD).set_weights([kernel, bias])
    model.save(folder / "cnn.keras")
    options = ExportOptions(quantize="int8", layer_report=True,
                            calibration=Samples([x], [y], "training rows"),
                            verification=Samples([x_val], [y_val], "held-out rows"),
                            min_agreement=0.0)
    report = export_document(open_document(folder / "cnn.keras"), "tflite",
                             folder / "cnn.tflite", options)
    return report, folder / "cnn.tflite"


def test_every_quantised_op_is_listed_with_finite_non_negative_errors(exported):
    report, path = exported
    interpreter = Interpreter(model_path=str(path),
                              experimental_op_resolver_type=OpResolverType
                              .BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    quantised = sorted(op["op_name"] for op in interpreter._get_ops_details()
                       if op["op_name"] not in ("QUANTIZE", "DEQUANTIZE", "RESHAPE")
                       and tensors[op["outputs"][0]]["dtype"] == np.int8)
    assert sorted(e.op for e in report.layer_report) == quantised
    for entry in report.layer_report:
        for value in (entry.rmse, entry.scale, entry.rmse_per_scale, entry.max_abs_error):
            assert math.isfinite(value) and value >= 0, entry
    assert [e.rmse_per_scale for e in report.layer_report] == sorted(
        (e.rmse_per_scale for e in report.layer_report), reverse=True)


def test_the_layer_made_hard_to_quantise_ranks_worst(exported):
    report, _ = exported
    worst, *rest = report.layer_report
    assert worst.layer == HARD and worst.op == "CONV_2D"
    assert worst.rmse_per_scale > 3 * max(e.rmse_per_scale for e in rest)
    assert {e.layer for e in report.layer_report} >= {"conv1", HARD, "conv3", "probs"}
    summary = report.to_json()
    assert summary["layer_report"][0] == worst.to_json()
    assert any(HARD in line for line in report.lines())


@pytest.mark.parametrize("fmt, mode", [("tflite", "dynamic"), ("tflite", "float16"),
                                       ("onnx", "dynamic"), ("tflite", None)])
def test_the_report_is_refused_where_no_activation_is_quantised(tmp_path, fmt, mode):
    with pytest.raises(UserError, match="applies to --format tflite --quantize int8 only"):
        check_request(fmt, tmp_path / f"m.{fmt}", ExportOptions(quantize=mode,
                                                                layer_report=True))
