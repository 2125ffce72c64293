"""The deployment model every inference export is made from.

Stop-gradient layers are identity at inference, so the deployment model is the document's
graph without them (`document.base_layers[""]`, which shares every weight with the edited
model). It is described by named inputs and outputs and called through one `tf.function`
with an explicit input signature: the SavedModel's `serving_default`, the TFLite
converter, tf2onnx and the frozen graph all trace that same function, so every format
sees the same graph with the same names.

Names: an input is named after its `InputLayer` (what the user sees in the tree); an
output after the layer that produces it (Keras's `output_names`) or its dict key.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from freezestudio.core.errors import UserError
from freezestudio.core.files import formats
from freezestudio.core.graph.functional import inputs_struct, layer_calls, outputs_struct, producer
from freezestudio.core.model.signature import check_traceable

DEFAULT_INT_BOUND = 2
"""Random integer inputs are drawn from [0, bound); without a known vocabulary, [0, 2)."""


@dataclass(frozen=True)
class InputHints:
    """What valid inputs look like, for random verification data (per input name).

    Attributes:
        int_bounds: valid integer inputs lie in [0, n) (an Embedding's or
            CategoryEncoding's size).
        vocabularies: tokens a TextVectorization or StringLookup reading a string
            input knows.
        padded: integer inputs read by an Embedding with `mask_zero` (0 pads them).
    """

    int_bounds: dict = field(default_factory=dict)
    vocabularies: dict = field(default_factory=dict)
    padded: frozenset = frozenset()


@dataclass(frozen=True)
class TensorInfo:
    """A named input or output of the deployment model.

    Attributes:
        name: a valid TensorFlow op name, unique among the inputs (or outputs).
        shape: dimensions, None where unknown (the batch).
        dtype: numpy-style name, e.g. "float32".
    """

    name: str
    shape: tuple
    dtype: str


class InferenceModel:
    """A model ready for inference exports.

    Args:
        inputs: the inputs, in call order.
        outputs: the outputs, in call order.
        call: `call(list of tensors) -> list of tensors`, in inference mode.
        trackable: what owns the variables (saved alongside the function).
        keras_model: the Keras model, if there is one.
        hints: what valid inputs look like (`InputHints`).
    """

    def __init__(self, inputs: Sequence[TensorInfo], outputs: Sequence[TensorInfo],
                 call: Callable, trackable, keras_model=None, hints: InputHints | None = None):
        self.inputs = list(inputs)
        self.outputs = list(outputs)
        self._call = call
        self.trackable = trackable
        self.keras_model = keras_model
        self.hints = hints or InputHints()
        self._function = None

    @property
    def input_names(self) -> list[str]:
        return [t.name for t in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [t.name for t in self.outputs]

    def input_signature(self) -> list:
        """One `tf.TensorSpec` per input, named after it."""
        import tensorflow as tf

        return [tf.TensorSpec(t.shape, t.dtype, name=t.name) for t in self.inputs]

    def function(self):
        """The serving `tf.function`: positional inputs, `{output name: tensor}` out."""
        if self._function is None:
            import tensorflow as tf

            call, names = self._call, self.output_names

            def serve(*args):
                return dict(zip(names, call(list(args)), strict=True))

            self._function = tf.function(serve, input_signature=self.input_signature())
        return self._function

    def predict(self, feeds: dict) -> list:
        """Runs the model eagerly on `{input name: array}`; numpy arrays in output order."""
        import tensorflow as tf

        tensors = [tf.constant(feeds[t.name], dtype=t.dtype) for t in self.inputs]
        return [_to_numpy(out) for out in self._call(tensors)]


def _to_numpy(tensor):
    import numpy as np

    return np.asarray(tensor.numpy() if hasattr(tensor, "numpy") else tensor)


def deployment_model(document) -> InferenceModel:
    """The document's model for inference: without stop-gradient layers.

    Raises:
        UserError: the model has no fixed inputs, or a generic SavedModel has no signature.
    """
    if document.source_format == formats.SAVEDMODEL:
        return from_saved_model_signature(document.model)
    from freezestudio.core.edits.stop_gradient import strip_stop_gradients

    model = document.base_layers.get("", document.model) if document.stop_points \
        else document.model
    model, _ = strip_stop_gradients(model)  # a no-op unless a StopGradient layer slipped in
    check_traceable(model, "export this model for deployment")
    return from_keras_model(model)


def reference_model(document) -> InferenceModel:
    """The edited model itself (stop-gradient layers included), to verify exports against."""
    if document.source_format == formats.SAVEDMODEL:
        return from_saved_model_signature(document.model)
    return from_keras_model(document.model)


def from_keras_model(model) -> InferenceModel:
    """Wraps a built Functional or Sequential Keras model."""
    import keras

    try:
        tensors = list(model.inputs)
    except (AttributeError, ValueError):
        tensors = []
    if not tensors:
        raise UserError(f"model '{model.name}' has no fixed inputs (a subclassed model that was "
                        "never built on keras.Input): it cannot be exported for deployment")
    structure = inputs_struct(model)
    if isinstance(model, keras.Sequential) or structure is None:
        structure = tensors[0] if len(tensors) == 1 else tensors
    tensors = keras.tree.flatten(structure)
    inputs = _unique([TensorInfo(_input_name(t), _shape(t), _dtype(t)) for t in tensors])
    out_structure = outputs_struct(model)
    if out_structure is None:
        out_structure = model.outputs[0] if len(model.outputs) == 1 else model.outputs
    out_tensors = keras.tree.flatten(out_structure)
    names = _output_names(model, out_structure, len(out_tensors))
    outputs = _unique([TensorInfo(n, _shape(t), _dtype(t))
                       for n, t in zip(names, out_tensors, strict=True)])

    def call(args):
        packed = keras.tree.pack_sequence_as(structure, list(args))
        return keras.tree.flatten(model(packed, training=False))

    return InferenceModel(inputs, outputs, call, model, keras_model=model,
                          hints=_input_hints(model, tensors, inputs))


def with_keras_model(inference: InferenceModel, model) -> InferenceModel:
    """The same interface (names, input hints) over an equivalent Keras model."""
    other = from_keras_model(model)
    return InferenceModel(inference.inputs, inference.outputs, other._call, model,
                          keras_model=model, hints=inference.hints)


def from_saved_model_signature(generic) -> InferenceModel:
    """Wraps a generic SavedModel (`GenericSavedModel`) through its serving signature."""
    import tensorflow as tf

    signatures = dict(generic.signatures)
    if "serving_default" in signatures:
        signature = signatures["serving_default"]
    elif len(signatures) == 1:
        signature = next(iter(signatures.values()))
    else:
        raise UserError("the SavedModel has no serving_default signature "
                        f"(it has {len(signatures)}: {', '.join(sorted(signatures)) or 'none'}): "
                        "nothing says which function to export")
    specs = signature.structured_input_signature[1]
    names = list(tf.nest.flatten({k: k for k in specs}))
    inputs = [TensorInfo(n, tuple(specs[n].shape.as_list()), specs[n].dtype.name) for n in names]
    structured = signature.structured_outputs
    out_names = list(tf.nest.flatten({k: k for k in structured}))
    outputs = [TensorInfo(n, tuple(structured[n].shape.as_list()), structured[n].dtype.name)
               for n in out_names]

    def call(args):
        result = signature(**dict(zip(names, args, strict=True)))
        return [result[n] for n in out_names]

    return InferenceModel(inputs, outputs, call, generic.loaded)


_INVALID = re.compile(r"[^A-Za-z0-9_.\-]")


def _op_name(name: str) -> str:
    """A valid TensorFlow op name (also a valid ONNX and TFLite tensor name)."""
    name = _INVALID.sub("_", name) or "tensor"
    return name if re.match(r"[A-Za-z0-9.]", name) else f"t{name}"


def _unique(infos: list[TensorInfo]) -> list[TensorInfo]:
    taken: set[str] = set()
    result = []
    for info in infos:
        base = name = _op_name(info.name)
        n = 1
        while name in taken:
            name, n = f"{base}_{n}", n + 1
        taken.add(name)
        result.append(TensorInfo(name, info.shape, info.dtype))
    return result


def _input_name(tensor) -> str:
    layer = producer(tensor)
    return layer.name if layer is not None else tensor.name


def _shape(tensor) -> tuple:
    return tuple(None if d is None else int(d) for d in tensor.shape)


def _dtype(tensor) -> str:
    import keras

    return keras.backend.standardize_dtype(tensor.dtype)


def _output_names(model, structure, count: int) -> list[str]:
    import keras

    if isinstance(structure, dict):
        return list(keras.tree.flatten({k: str(k) for k in structure}))
    names = list(getattr(model, "output_names", None) or [])
    if len(names) == count:
        return names
    if count == 1 and getattr(model, "layers", None):
        return [model.layers[-1].name]
    return [f"output_{i}" for i in range(count)]


def _input_hints(model, tensors, inputs: list[TensorInfo]) -> InputHints:
    """`InputHints` from the layers each input feeds directly."""
    import keras

    by_id = {id(t): info for t, info in zip(tensors, inputs, strict=True)}
    bounds: dict[str, int] = {}
    vocabularies: dict[str, list] = {}
    padded: set[str] = set()
    for layer in getattr(model, "layers", []):
        size = tokens = None
        if isinstance(layer, keras.layers.Embedding):
            size = layer.input_dim
        elif isinstance(layer, keras.layers.CategoryEncoding):
            size = layer.num_tokens
        elif isinstance(layer, keras.layers.TextVectorization | keras.layers.StringLookup):
            tokens = [t for t in layer.get_vocabulary() if t]
        fed = [by_id[id(t)] for node in layer_calls(layer) for t in node.input_tensors
               if id(t) in by_id]
        for info in fed:
            if size is not None and "int" in info.dtype:
                bounds[info.name] = min(bounds.get(info.name, size), int(size))
                if getattr(layer, "mask_zero", False):
                    padded.add(info.name)
            elif tokens and info.dtype == "string":
                vocabularies[info.name] = tokens
    return InputHints(bounds, vocabularies, frozenset(padded))
