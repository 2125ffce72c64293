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

DEFAULT_OPSET = 17
DEFAULT_TOLERANCE = 1e-3

Progress = Callable[[float, str], None]
"""`progress(fraction, message)`: fraction in [0, 1], message a short phrase."""


@dataclass
class ExportOptions:
    """How to export.

    Attributes:
        quantize: TFLite only: dynamic-range quantisation of the weights to int8 (the
            verification then only reports the difference).
        opset: ONNX only: the opset version (None: `DEFAULT_OPSET`).
        portable: `.keras`/`.h5` only: drop the stop-gradient layers so plain Keras loads
            the file without FreezeStudio.
        verify: load the export back with its own runtime and compare it with the model.
        tolerance: the largest accepted `max |export - model|` per output, relative to the
            output's scale: `tolerance * max(1, max |model output|)`.
        batch_size: rows of random input used for the verification.
        seed: seed of the random verification inputs.
        sample_inputs: real inputs to verify with instead of random ones,
            `{input name: array}`.
    """

    quantize: bool = False
    opset: int | None = None
    portable: bool = False
    verify: bool = True
    tolerance: float = DEFAULT_TOLERANCE
    batch_size: int = 2
    seed: int = 0
    sample_inputs: Mapping | None = None
