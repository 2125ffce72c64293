"""What an export can be asked to do: formats and options."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum


class ExportFormat(str, Enum):
    """An export format; the value is its `--format` name. Not the same vocabulary as
    `SourceFormat` (what a model was read from): a "savedmodel" export is for serving."""

    KERAS = "keras"
    H5 = "h5"
    SAVEDMODEL = "savedmodel"
    TFLITE = "tflite"
    ONNX = "onnx"
    FROZEN_GRAPH = "frozen-graph"

    __str__ = str.__str__
    __format__ = str.__format__


FORMATS = tuple(ExportFormat)
"""Every export format, in the order a user interface lists them."""

EDITABLE_FORMATS = (ExportFormat.KERAS, ExportFormat.H5)
"""Formats that keep the editable model (flags, stop-gradient points)."""

DEPLOYMENT_FORMATS = (ExportFormat.SAVEDMODEL, ExportFormat.TFLITE, ExportFormat.ONNX,
                      ExportFormat.FROZEN_GRAPH)
"""Formats for inference: stop-gradient layers are dropped (identity at inference)."""

class Quantization(str, Enum):
    """A post-training quantisation mode; the value is its `--quantize` name.

    `dynamic`: weights stored as int8, activations computed in float (TFLite, ONNX);
    `float16`: weights stored as float16 (TFLite); `int8`: full-integer, weights and
    activations int8, calibrated on representative samples (TFLite).
    """

    DYNAMIC = "dynamic"
    FLOAT16 = "float16"
    INT8 = "int8"

    __str__ = str.__str__
    __format__ = str.__format__


class IOType(str, Enum):
    """The input/output type of a full-integer TFLite model; the value is its `--io-type`.

    `float32` (default): float tensors in and out, quantised inside the model (runs
    wherever the float model runs); `int8`: the caller quantises inputs and dequantises
    outputs with the tensors' scale and zero point (integer-only accelerators)."""

    FLOAT32 = "float32"
    INT8 = "int8"

    __str__ = str.__str__
    __format__ = str.__format__


QUANTIZATIONS = {
    ExportFormat.TFLITE: (Quantization.DYNAMIC, Quantization.FLOAT16, Quantization.INT8),
    ExportFormat.ONNX: (Quantization.DYNAMIC,),
}
"""The quantisation modes each format offers."""

MIN_AGREEMENT = {Quantization.DYNAMIC: 0.97, Quantization.FLOAT16: 0.99,
                 Quantization.INT8: 0.95}
"""The default least top-1 agreement with the model on the user's samples, per mode:
float16 rounds weights only slightly, dynamic-range quantisation rounds weights to 8 bits,
full integer also rounds every activation."""

DEFAULT_OPSET = 17
DEFAULT_TOLERANCE = 1e-3
DEFAULT_CALIBRATION_SAMPLES = 300
"""Rows of the calibration data used for full-integer quantisation (the TFLite
documentation's "a few hundred" representative samples)."""
DEFAULT_VERIFICATION_SAMPLES = 2000
"""At most this many rows of the verification data are compared."""

Progress = Callable[[float, str], None]
"""`progress(fraction, message)`: fraction in [0, 1], message a short phrase."""


@dataclass
class ExportOptions:
    """How to export.

    Attributes:
        quantize: a `Quantization` mode (None: float). Also accepts its name, and `True`
            for `dynamic` (the old flag). TFLite: all three; ONNX: `dynamic`.
        io_type: full-integer TFLite only: the model's input/output type (`IOType`).
        calibration: int8 only: the representative samples (`samples.Samples`).
        verification: the user's samples to verify on instead of random inputs
            (`samples.Samples`; with labels, the accuracy is reported too).
        min_agreement: quantised exports verified on `verification`: the least top-1
            agreement with the model per classifier output (None: `MIN_AGREEMENT` of
            the mode). Quantised outputs are never held to `tolerance`.
        layer_report: full-integer TFLite only: also measure each quantised op's own
            error (`ExportReport.layer_report`; costs another calibration).
        opset: ONNX only: the opset version (None: `DEFAULT_OPSET`).
        portable: `.keras`/`.h5` only: drop the stop-gradient layers so plain Keras loads
            the file without FreezeStudio.
        merge_lora: `.keras`/`.h5` only: write LoRA adapters merged into their kernels
            (a plain model). Deployment formats always merge them.
        verify: load the export back with its own runtime and compare it with the model.
        tolerance: the largest accepted `max |export - model|` per output, relative to the
            output's scale: `tolerance * max(1, max |model output|)`.
        batch_size: rows of random input used for the verification.
        seed: seed of the random verification inputs.
        sample_inputs: real inputs to verify with instead of random ones,
            `{input name: array}`.
    """

    quantize: Quantization | None = None
    io_type: IOType = IOType.FLOAT32
    calibration: object | None = None
    verification: object | None = None
    min_agreement: float | None = None
    layer_report: bool = False
    opset: int | None = None
    portable: bool = False
    merge_lora: bool = False
    verify: bool = True
    tolerance: float = DEFAULT_TOLERANCE
    batch_size: int = 2
    seed: int = 0
    sample_inputs: Mapping | None = None

    def __post_init__(self):
        if self.quantize is True:
            self.quantize = Quantization.DYNAMIC
        elif not self.quantize:
            self.quantize = None
        else:
            self.quantize = _member(Quantization, self.quantize, "quantisation mode")
        self.io_type = _member(IOType, self.io_type, "I/O type")

    @property
    def agreement_floor(self) -> float | None:
        """The least accepted top-1 agreement (None: not a quantised export)."""
        if self.quantize is None:
            return None
        return MIN_AGREEMENT[self.quantize] if self.min_agreement is None else self.min_agreement


def _member(enum, value, what: str):
    from freezestudio.core.errors import UserError

    try:
        return enum(value)
    except ValueError:
        raise UserError(f"unknown {what} '{value}' (choose from "
                        f"{', '.join(m.value for m in enum)})") from None
