"""TFLite: float32, or quantised (dynamic range, float16, full integer), built-in ops only.

The converter reads a SavedModel written from the deployment model (`from_saved_model`):
on this stack `from_concrete_functions` gave wrong outputs while `from_saved_model` and
`from_keras_model` were right (docs/architecture.md). Only TFLite's built-in ops are allowed, so
the result never needs the Flex delegate; looping recurrent layers are unrolled first
(`unroll.py`).
"""

from __future__ import annotations

import re
import tempfile
import warnings
from pathlib import Path

from freezestudio.core.errors import UserError, first_line
from freezestudio.core.export.inference_model import InferenceModel, with_keras_model
from freezestudio.core.export.options import IOType, Quantization
from freezestudio.core.export.report import Written
from freezestudio.core.export.savedmodel import SIGNATURE, write_savedmodel
from freezestudio.core.export.unroll import unrolled_for_tflite

NOTES = {
    Quantization.DYNAMIC: "dynamic-range quantised: weights stored as int8, activations "
                          "computed in float",
    Quantization.FLOAT16: "float16 quantised: weights stored as float16, computed in float32",
    Quantization.INT8: "full-integer quantised: weights and activations int8, calibrated on "
                       "{n} sample(s); {io}",
}
IO_NOTES = {
    IOType.FLOAT32: "float32 input and output (quantised inside the model)",
    IOType.INT8: "int8 input and output for float tensors (integer inputs such as token ids "
                 "stay as they are); scale and zero point are in the tensors' quantisation "
                 "parameters",
}


def write_tflite(inference: InferenceModel, path: Path, options, step=None) -> Written:
    """Converts the deployment model and writes the flatbuffer to `path`.

    Quantisation is the converter's post-training quantisation (`optimizations`,
    `supported_types`, `representative_dataset`), not the separate `litert-quantizer`
    package: measured on the demo CNN (docs/architecture.md, Known traps, Export;
    `scripts/quantization_table.py`), the converter's full-integer model stayed ~18x closer
    to the float model (max |diff| 0.016 against 0.29; top-1 agreement 0.990 against
    0.947) at the same size, it alone offers float16, and it needs no dependency beyond
    TensorFlow. Its dynamic-range model is 5 % larger than the quantizer's (0.320x against
    0.305x of the float file) and agrees slightly better (0.997 against 0.990).

    Args:
        step: `step(fraction, message)` during the calibration pass (may raise
            `ExportCancelled`, which stops the conversion).

    Returns:
        Notes for the report; a quantised export also converts the float model from the
        same SavedModel, for `float_bytes`.

    Raises:
        UserError: the model cannot be expressed with TFLite's built-in ops (or, for int8,
            with integer kernels).
    """

    notes: list[str] = []
    if inference.keras_model is not None:
        model, notes = unrolled_for_tflite(inference.keras_model)
        if model is not inference.keras_model:
            inference = with_keras_model(inference, model)
    with tempfile.TemporaryDirectory(prefix="freezestudio-tflite-") as tmp:
        saved = Path(tmp) / "saved_model"
        write_savedmodel(inference, saved)
        converter = _converter(saved)
        calibration = _configure_quantization(converter, inference, options, step)
        flatbuffer = _convert(converter, options.quantize, calibration)
        written = Written(notes)
        if options.layer_report:
            written.layer_report = _layer_report(saved, inference, options, step)
        if options.quantize is not None:
            if step is not None:
                step(0.62, "converting the float model, for the size comparison")
            written.float_bytes = len(_convert(_converter(saved), None, None))
            notes.append(NOTES[options.quantize].format(
                n=calibration.count if calibration else 0, io=IO_NOTES[options.io_type]))
    path.write_bytes(flatbuffer)
    return written


def _layer_report(saved: Path, inference, options, step) -> list:
    """`layer_report.layer_errors` on a converter of the same SavedModel and calibration
    rows as the export (so the same scales), run on the verification rows if any."""
    from freezestudio.core.export.layer_report import LAYER_REPORT_SAMPLES, layer_errors

    if step is not None:
        step(0.64, f"per-layer quantisation report ({LAYER_REPORT_SAMPLES} samples)")
    converter = _converter(saved)
    _configure_quantization(converter, inference, options, None)
    samples = options.verification or options.calibration
    model = inference.keras_model
    layers = [layer.name for layer in model._flatten_layers()] if model is not None else []
    try:
        return layer_errors(converter, samples.feeds(inference), inference.input_names, layers)
    except Exception as exc:  # noqa: BLE001 - the debugger raises many kinds
        raise UserError(f"cannot make the per-layer quantisation report: {first_line(exc)}; "
                        "export without --layer-report") from None


def _converter(saved: Path):
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved), signature_keys=[SIGNATURE])
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    return converter


def _convert(converter, mode, calibration) -> bytes:
    try:
        with warnings.catch_warnings():  # its calibrator uses tf.lite.Interpreter
            warnings.simplefilter("ignore")
            return converter.convert()
    except Exception as exc:  # noqa: BLE001 - the converter raises many kinds
        if calibration is not None and calibration.stopped is not None:
            raise calibration.stopped from None
        raise UserError(conversion_failure(exc, mode)) from None


def _configure_quantization(converter, inference, options, step):
    """Sets the converter up for `options.quantize`; returns the calibration feed (int8)."""
    import tensorflow as tf

    mode = options.quantize
    if mode is None:
        return None
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if mode == Quantization.FLOAT16:
        converter.target_spec.supported_types = [tf.float16]
        return None
    if mode == Quantization.DYNAMIC:
        return None
    if options.calibration is None:
        raise UserError("int8 quantisation needs calibration data (--calibration-data DATA)")
    feed = _Calibration(options.calibration.feeds(inference), inference, step)
    converter.representative_dataset = feed
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    if options.io_type == IOType.INT8:  # float tensors only: token ids stay int32
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    return feed


class _Calibration:
    """The converter's representative dataset: one row at a time, reporting progress.

    A cancel raised by `step` is kept in `stopped` (the converter would wrap it)."""

    def __init__(self, feeds: dict, inference, step):
        self._feeds, self._names, self._step = feeds, inference.input_names, step
        self.count = len(next(iter(feeds.values())))
        self.stopped = None

    def __call__(self):
        for row in range(self.count):
            if self._step is not None and row % 10 == 0:
                try:
                    self._step(0.2 + 0.4 * row / self.count,
                               f"calibrating int8 ranges ({row}/{self.count} samples)")
                except Exception as exc:
                    self.stopped = exc
                    raise
            yield {name: self._feeds[name][row:row + 1] for name in self._names}


def conversion_failure(exc: Exception, mode=None) -> str:
    """One line saying why the converter refused the model."""
    text = str(exc)
    if mode == Quantization.INT8 and ("quantiz" in text.lower() or "int8" in text.lower()):
        return ("cannot export to TFLite as int8: the converter cannot quantise every op of "
                f"this model to integers ({first_line(exc)}); use --quantize dynamic or "
                "float16")
    ops = sorted(set(re.findall(r"'tf\.(\w+)' op", text)))
    if ops:
        return ("cannot export to TFLite: the model uses TensorFlow ops that TFLite's built-in "
                f"op set lacks ({', '.join(ops[:6])}); the stock tf.lite.Interpreter cannot run "
                "them (they would need the Flex delegate)")
    return f"cannot export to TFLite: the converter failed: {first_line(exc)}"


def interpreter(path: Path):
    """An interpreter over a `.tflite` file: LiteRT's (`ai_edge_litert`, what TF 2.21
    deprecates `tf.lite.Interpreter` in favour of), else the stock one (its deprecation
    warning silenced)."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        import tensorflow as tf

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return tf.lite.Interpreter(model_path=str(path))
    return Interpreter(model_path=str(path))


def runtime_name() -> str:
    """The interpreter `interpreter` uses, for the report."""
    try:
        import ai_edge_litert.interpreter  # noqa: F401
    except ImportError:
        return "tf.lite.Interpreter (serving_default)"
    return "LiteRT ai_edge_litert Interpreter (serving_default)"


def run_tflite(path: Path, inference: InferenceModel, feeds: dict) -> list:
    """Runs the `serving_default` signature of a `.tflite` file on `feeds`.

    Integer inputs of a model whose float inputs were quantised (`--io-type int8`) are
    quantised with their tensor's scale and zero point, its integer outputs dequantised,
    so the outputs are comparable with the model's.
    """
    import numpy as np

    runner = interpreter(path).get_signature_runner(SIGNATURE)
    details = runner.get_input_details()
    args = {}
    for t in inference.inputs:
        value = np.asarray(feeds[t.name], dtype=t.dtype)
        wanted = details[t.name]
        if "float" in t.dtype and np.issubdtype(wanted["dtype"], np.integer):
            value = _quantize(value, wanted)
        args[t.name] = value
    result = runner(**args)
    outputs = runner.get_output_details()
    return [_dequantize(np.asarray(result[name]), outputs[name])
            for name in inference.output_names]


def _quantize(value, detail):
    import numpy as np

    scale, zero = detail["quantization"]
    info = np.iinfo(detail["dtype"])
    return np.clip(np.round(value / scale + zero), info.min, info.max).astype(detail["dtype"])


def _dequantize(value, detail):
    import numpy as np

    scale, zero = detail["quantization"]
    if np.issubdtype(value.dtype, np.integer) and scale:
        return (value.astype(np.float32) - zero) * scale
    return value
