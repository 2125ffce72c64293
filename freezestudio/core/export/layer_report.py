"""The per-layer quantisation report of a full-integer TFLite export (`--layer-report`).

Which quantised ops lose most: TFLite's `QuantizationDebugger` builds the int8 model with
a `NumericVerify` op after every quantised op. Each one runs the op in float on the same
(quantised) input and outputs `float - dequantised` for that op alone, so an error is the
op's own, not the sum of the ops before it. Per op the report gives the RMSE of that
difference, averaged over the samples, and the RMSE divided by the op's output scale (one
int8 step): plain rounding to the step gives 1/sqrt(12) ~ 0.29, so an op far above that
loses more than its output's resolution (weights too coarse for their range, clipped
activations). Entries are sorted worst first by that ratio.

Cost: the debugger calibrates again on the export's calibration rows (so its scales are
the export's) and runs only `LAYER_REPORT_SAMPLES` rows through the instrumented model,
with no whole-model comparison (no float model is converted).
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass

LAYER_REPORT_SAMPLES = 32
"""Rows run through the instrumented model (the verification data's, else calibration's)."""

IDEAL_RMSE_PER_SCALE = 12 ** -0.5
"""The RMSE of rounding uniformly distributed values to a step of 1, in steps."""


@dataclass(frozen=True)
class LayerError:
    """One quantised op's own error.

    Attributes:
        layer: the Keras layer the op belongs to (None if its tensor names none).
        op: the TFLite op ("CONV_2D", "FULLY_CONNECTED", ...).
        tensor: the op's output tensor in the TFLite model.
        rmse: root mean square of `float - dequantised`, averaged over the samples.
        scale: the output's quantisation step.
        rmse_per_scale: `rmse / scale` (~0.29 for plain rounding; larger is worse).
        max_abs_error: the largest `|float - dequantised|` seen.
    """

    layer: str | None
    op: str
    tensor: str
    rmse: float
    scale: float
    rmse_per_scale: float
    max_abs_error: float

    def to_json(self) -> dict:
        return {"layer": self.layer, "op": self.op, "tensor": self.tensor, "rmse": self.rmse,
                "scale": self.scale, "rmse_per_scale": self.rmse_per_scale,
                "max_abs_error": self.max_abs_error}

    def line(self) -> str:
        return (f"{self.layer or self.tensor} ({self.op}): RMSE {self.rmse:.3g}, "
                f"{self.rmse_per_scale:.2f} steps (plain rounding {IDEAL_RMSE_PER_SCALE:.2f})")


def layer_errors(converter, feeds: dict, names: list, layer_names) -> list[LayerError]:
    """The report for an int8 `converter` already set up with its representative dataset.

    Args:
        converter: a `TFLiteConverter` configured for full-integer quantisation, not
            used for anything else (its I/O type is set to float: the debugger feeds
            float rows).
        feeds: `{input name: array}` to run (the first `LAYER_REPORT_SAMPLES` rows).
        names: the model's input names, in the order of the TFLite model's inputs.
        layer_names: the Keras layer names, to name each op's layer.

    Returns:
        One entry per quantised op, worst `rmse_per_scale` first.
    """
    import numpy as np
    import tensorflow as tf

    converter.inference_input_type = tf.float32
    converter.inference_output_type = tf.float32
    count = min(LAYER_REPORT_SAMPLES, len(next(iter(feeds.values()))))
    order = list(names)  # the TFLite model's input order, known once it is built

    def rows():
        for row in range(count):
            yield [np.asarray(feeds[name][row:row + 1]) for name in order]

    options = tf.lite.experimental.QuantizationDebugOptions(
        layer_debug_metrics={"rmse": lambda diffs: float(np.sqrt(np.mean(np.square(diffs))))})
    with warnings.catch_warnings():  # the debugger uses the deprecated tf.lite.Interpreter
        warnings.simplefilter("ignore")
        debugger = tf.lite.experimental.QuantizationDebugger(
            converter=converter, debug_dataset=rows, debug_options=options)
        order[:] = _input_order(debugger._quant_interpreter, names)  # noqa: SLF001
        debugger.run()
        entries = _entries(debugger, layer_names)
    return sorted(entries, key=lambda e: -e.rmse_per_scale)


def _entries(debugger, layer_names) -> list[LayerError]:
    """One `LayerError` per `NumericVerify` op of the debugger's statistics."""
    import tensorflow as tf

    interpreter = tf.lite.Interpreter(  # undelegated: XNNPACK would rename fused ops
        model_content=debugger.quant_model,
        experimental_op_resolver_type=tf.lite.experimental.OpResolverType
        .BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    ops = interpreter._get_ops_details()  # noqa: SLF001 - names and scales of the ops
    producer = {out: op for op in ops for out in op["outputs"]}
    by_output = {interpreter._get_tensor_details(op["outputs"][0], 0)["name"]: op  # noqa: SLF001
                 for op in ops if op["op_name"] == "NumericVerify"}
    entries = []
    for name, stats in debugger.layer_statistics.items():
        quantized = by_output[name]["inputs"][0]
        detail = interpreter._get_tensor_details(quantized, 0)  # noqa: SLF001
        scale = float(detail["quantization_parameters"]["scales"][0])
        op = producer[quantized]["op_name"] if quantized in producer else "?"
        rmse = float(stats["rmse"])
        entries.append(LayerError(_layer_of(detail["name"], layer_names), op, detail["name"],
                                  rmse, scale, rmse / scale if scale else float("inf"),
                                  float(stats["max_abs_error"])))
    return entries


def _input_order(interpreter, names: list) -> list:
    """`names` in the order of the interpreter's inputs (the debugger feeds by position;
    converted inputs are named `serving_default_<name>:0`)."""
    found = [d["name"] for d in interpreter.get_input_details()]
    position = {n: next((i for i, f in enumerate(found) if f.split(":")[0].endswith(n)),
                        len(found)) for n in names}
    return sorted(names, key=position.get)


def _layer_of(tensor: str, layer_names) -> str | None:
    """The Keras layer a TFLite tensor name names: the deepest scope segment that is a
    layer's name (Keras may suffix scopes with `_N`)."""
    known = set(layer_names)
    for part in reversed(re.split(r"[;/]", tensor.split(";")[0])):
        if part in known:
            return part
        base = re.sub(r"_\d+$", "", part)
        if base in known:
            return base
    return None
