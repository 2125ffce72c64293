"""ONNX through tf2onnx, from the deployment model's serving function.

Why this path: the candidates were Keras's own `model.export(format="onnx")`,
`tf2onnx.convert.from_keras(model, input_signature=...)` and
`tf2onnx.convert.from_function(serving_function, input_signature=...)`. On the TensorFlow
backend Keras's export is itself `tf2onnx.convert.from_function` on a function of its
own, so all three convert the same ops and all matched Keras on MobileNetV2, an
Embedding+LSTM model (as an ONNX Loop) and a two-output model (max |diff| <= 1e-8,
measured with tf2onnx 1.17, onnx 1.23, onnxruntime 1.32, numpy 2.4). They differ in what
the user gets: Keras's export names the outputs `Identity:0`, `Identity_1:0`, and
`from_keras` relies on tf.keras-era model attributes and needs the explicit
`input_signature` on Keras 3 anyway (docs/architecture.md). `from_function` on the SAME serving
function the SavedModel and frozen graph use gives ONNX inputs named after the model's
inputs and outputs named after its outputs, with a dynamic batch, and also works for
generic SavedModels (which have no Keras model). So FreezeStudio uses that.
"""

from __future__ import annotations

import contextlib
import logging
import re
from pathlib import Path

from freezestudio.core.errors import UserError, first_line
from freezestudio.core.export.dependencies import require_onnx
from freezestudio.core.export.inference_model import InferenceModel
from freezestudio.core.export.options import DEFAULT_OPSET
from freezestudio.core.export.report import Written

MIN_OPSET = 9


def supported_opsets() -> range:
    """The opsets the installed tf2onnx can write."""
    import tf2onnx

    return range(MIN_OPSET, max(tf2onnx.constants.OPSET_TO_IR_VERSION) + 1)


def check_opset(opset: int | None) -> int:
    """The opset to use. Raises UserError if tf2onnx cannot write it."""
    opset = DEFAULT_OPSET if opset is None else int(opset)
    supported = supported_opsets()
    if opset not in supported:
        raise UserError(f"ONNX opset {opset} is not supported by the installed tf2onnx "
                        f"(choose {supported.start}-{supported.stop - 1})")
    return opset


@contextlib.contextmanager
def _quiet_logger(name: str = "tf2onnx"):
    """Only errors from the logger `name` (onnxruntime.quantization warns on the root one)."""
    logger = logging.getLogger(name) if name else logging.getLogger()
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def write_onnx(inference: InferenceModel, path: Path, options) -> Written:
    """Converts the deployment model to an ONNX file at `path` (then quantises it, if
    `options.quantize`: `float_bytes` is the float file's size).

    Raises:
        MissingDependencyError: tf2onnx/onnx (or onnxruntime, to verify) is missing.
        UserError: unsupported opset, or the model has ops tf2onnx cannot convert.
    """
    modules = require_onnx(runtime=options.verify)
    opset = check_opset(options.opset)
    tf2onnx = modules["tf2onnx"]
    try:
        with _quiet_logger():
            tf2onnx.convert.from_function(inference.function(),
                                          input_signature=inference.input_signature(),
                                          opset=opset, output_path=str(path))
    except Exception as exc:  # noqa: BLE001 - tf2onnx raises many kinds
        raise UserError(f"cannot export to ONNX (opset {opset}): tf2onnx failed: "
                        f"{first_line(exc)}") from None
    _check_converted(path, inference)
    written = Written([f"ONNX opset {opset}"])
    if options.quantize is not None:
        written.float_bytes = path.stat().st_size
        written.notes.append(quantize_dynamic(path))
    return written


def quantize_dynamic(path: Path) -> str:
    """Rewrites the ONNX file at `path` with onnxruntime's dynamic quantisation: int8
    weights (per tensor), activations quantised on the fly (MatMul, Conv, Gather...).

    Returns:
        A note for the report.

    Raises:
        UserError: onnxruntime cannot quantise the graph.
    """
    import tempfile

    from onnxruntime.quantization import QuantType
    from onnxruntime.quantization import quantize_dynamic as ort_quantize

    with tempfile.TemporaryDirectory(prefix="freezestudio-onnx-") as tmp:
        float_path = Path(tmp) / "float.onnx"
        path.replace(float_path)
        try:
            with _quiet_logger(""):
                ort_quantize(str(float_path), str(path), weight_type=QuantType.QInt8)
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises many kinds
            raise UserError(f"cannot quantise the ONNX export: onnxruntime.quantization "
                            f"failed: {first_line(exc)}") from None
    return ("dynamic-range quantised by onnxruntime.quantization: int8 weights, "
            "activations quantised at run time")


_GROUPED_WORKING = "savedmodel, tflite and frozen-graph exports (and keras/h5) keep it"
_TF_WORKING = "a savedmodel export keeps every TensorFlow op"


def _check_converted(path: Path, inference: InferenceModel) -> None:
    """Raises UserError if tf2onnx left TensorFlow nodes in the graph (it does so silently
    for what it cannot convert, e.g. an XLA-compiled function: no ONNX runtime can run
    them), naming the layers and the TensorFlow op or function."""
    left = _tensorflow_nodes(path)
    if not left:
        return
    functions = sorted({function for _, _, function in left if function})
    if any("_conv_xla" in function for function in functions):
        grouped = _grouped_convolutions(inference.keras_model)
        example = grouped[0] if grouped else _layer_of(left[0][1], inference.keras_model)
        raise UserError(
            f"cannot export to ONNX: tf2onnx cannot convert {len(grouped) or len(left)} "
            f"grouped convolution(s) (e.g. {example}): Keras's TensorFlow backend runs a "
            "convolution with groups > 1 as an XLA-compiled function (_conv_xla, "
            "jit_compile=True), which tf2onnx leaves as a TensorFlow StatefulPartitionedCall "
            f"that no ONNX runtime can run; {_GROUPED_WORKING}")
    op_type, name, function = left[0]
    what = f"{op_type} ({function})" if function else op_type
    raise UserError(f"cannot export to ONNX: tf2onnx cannot convert the TensorFlow op {what} "
                    f"in {_layer_of(name, inference.keras_model)} ({len(left)} such node(s)), "
                    f"so no ONNX runtime can run the graph; {_TF_WORKING}")


def _tensorflow_nodes(path: Path) -> list[tuple[str, str, str]]:
    """(op type, node name, called function or "") of the nodes that are not ONNX ops."""
    onnx = require_onnx(runtime=False)["onnx"]
    model = onnx.load(str(path))
    left = []
    for node in model.graph.node:
        if node.domain in ("", "ai.onnx") and not onnx.defs.has(node.op_type):
            called = next((a.s.decode(errors="replace") for a in node.attribute
                           if a.name == "f" and a.s), "")
            match = re.match(r"__inference_(.+?)(_frozen)?_\d+$", called)
            left.append((node.op_type, node.name, match.group(1) if match else called))
    return left


def _grouped_convolutions(model) -> list[str]:
    if model is None:
        return []
    return [f"'{layer.name}' ({type(layer).__name__} groups={layer.groups})"
            for layer in model._flatten_layers(include_self=False)
            if getattr(layer, "groups", 1) > 1]


def _layer_of(node_name: str, model) -> str:
    """The Keras layer whose name scope holds a node ("model_1/block_conv_1/Op": the layer
    'block_conv', TF uniquifying scopes with "_1"), else the scope itself."""
    scopes = node_name.split("/")[:-1]
    layers = {} if model is None else {layer.name: layer for layer in
                                       model._flatten_layers(include_self=False)}
    for scope in reversed(scopes):
        for name in (scope, re.sub(r"_\d+$", "", scope)):
            if name in layers:
                return f"'{name}' ({type(layers[name]).__name__})"
    return f"'{'/'.join(scopes) or node_name}'"


def run_onnx(path: Path, inference: InferenceModel, feeds: dict) -> list:
    """Runs the ONNX file with onnxruntime (CPU) on `feeds`."""
    import numpy as np

    onnxruntime = require_onnx()["onnxruntime"]
    try:
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own pybind types
        missing = re.search(r"No Op registered for (\S+)", str(exc))
        reason = f"it has no kernel for {missing.group(1)}" if missing else \
            first_line(exc, default="")
        raise UserError(f"cannot export to ONNX: onnxruntime cannot run the converted graph "
                        f"({reason}); nothing was written") from None
    return session.run(inference.output_names,
                       {t.name: np.asarray(feeds[t.name], dtype=t.dtype)
                        for t in inference.inputs})


def onnx_nodes(path: Path) -> list[tuple[str, str]]:
    """(op type, node name) of every node, subgraphs (loops, branches) included."""
    onnx = require_onnx(runtime=False)["onnx"]
    found: list[tuple[str, str]] = []

    def walk(graph):
        for node in graph.node:
            found.append((node.op_type, node.name))
            for attribute in node.attribute:
                if attribute.g is not None and attribute.g.node:
                    walk(attribute.g)
                for sub in attribute.graphs:
                    walk(sub)

    walk(onnx.load(str(path)).graph)
    return found
