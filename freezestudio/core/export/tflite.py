"""TFLite: float32, or dynamic-range quantised, runnable in the stock `tf.lite.Interpreter`.

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
from freezestudio.core.export.savedmodel import SIGNATURE, write_savedmodel
from freezestudio.core.export.unroll import unrolled_for_tflite

QUANTIZED_NOTE = ("dynamic-range quantised: weights stored as int8, computed in float; the "
                  "outputs differ from the float model by design, so the difference is "
                  "reported, not checked")


def write_tflite(inference: InferenceModel, path: Path, options) -> list[str]:
    """Converts the deployment model and writes the flatbuffer to `path`.

    Returns:
        Notes for the report.

    Raises:
        UserError: the model cannot be expressed with TFLite's built-in ops.
    """
    import tensorflow as tf

    notes: list[str] = []
    if inference.keras_model is not None:
        model, notes = unrolled_for_tflite(inference.keras_model)
        if model is not inference.keras_model:
            inference = with_keras_model(inference, model)
    with tempfile.TemporaryDirectory(prefix="freezestudio-tflite-") as tmp:
        saved = Path(tmp) / "saved_model"
        write_savedmodel(inference, saved)
        converter = tf.lite.TFLiteConverter.from_saved_model(str(saved),
                                                             signature_keys=[SIGNATURE])
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        if options.quantize:
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            notes.append(QUANTIZED_NOTE)
        try:
            flatbuffer = converter.convert()
        except Exception as exc:  # noqa: BLE001 - the converter raises many kinds
            raise UserError(conversion_failure(exc)) from None
    path.write_bytes(flatbuffer)
    return notes


def conversion_failure(exc: Exception) -> str:
    """One line saying why the converter refused the model."""
    text = str(exc)
    ops = sorted(set(re.findall(r"'tf\.(\w+)' op", text)))
    if ops:
        return ("cannot export to TFLite: the model uses TensorFlow ops that TFLite's built-in "
                f"op set lacks ({', '.join(ops[:6])}); the stock tf.lite.Interpreter cannot run "
                "them (they would need the Flex delegate)")
    return f"cannot export to TFLite: the converter failed: {first_line(exc)}"


def interpreter(path: Path):
    """The stock interpreter over a `.tflite` file (its deprecation warning silenced)."""
    import tensorflow as tf

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return tf.lite.Interpreter(model_path=str(path))


def run_tflite(path: Path, inference: InferenceModel, feeds: dict) -> list:
    """Runs the `serving_default` signature of a `.tflite` file on `feeds`."""
    import numpy as np

    runner = interpreter(path).get_signature_runner(SIGNATURE)
    result = runner(**{t.name: np.asarray(feeds[t.name], dtype=t.dtype)
                       for t in inference.inputs})
    return [np.asarray(result[name]) for name in inference.output_names]
