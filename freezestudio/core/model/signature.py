"""What a document's model takes and gives: named inputs and outputs with shapes and dtypes.

Keras models are read from their functional graph; generic SavedModels from their
`serving_default` signature. `forward_fn` gives one callable for both, so the training
engine does not care which kind of model it trains.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from freezestudio.core.errors import UserError
from freezestudio.core.graph.functional import (
    graph_of,
    inbound_call,
    inputs_struct,
    is_keras_operation,
    producer,
)


@dataclass(frozen=True)
class IOSpec:
    """One model input or output.

    Attributes:
        name: the input layer's name (Keras) or the signature key (SavedModel).
        shape: with None for unknown dimensions, batch dimension included.
        dtype: a dtype name such as "float32" or "int32".
        activation: for outputs, the final activation ("softmax", "sigmoid", "linear"),
            or None when unknown.
    """

    name: str
    shape: tuple
    dtype: str
    activation: str | None = None

    @property
    def units(self) -> int | None:
        """The size of the last dimension (classes/values per sample), if known."""
        return self.shape[-1] if len(self.shape) > 1 else 1


@dataclass(frozen=True)
class ModelIO:
    inputs: tuple[IOSpec, ...]
    outputs: tuple[IOSpec, ...]


def is_keras(document) -> bool:
    return is_keras_operation(document.model) or hasattr(document.model, "layers")


def model_io(document) -> ModelIO:
    """The inputs and outputs of the document's model. Raises UserError if unknown."""
    if is_keras(document):
        return keras_io(document.model)
    return _savedmodel_io(document.model)


def _dtype_name(dtype) -> str:
    return getattr(dtype, "name", None) or str(dtype)


def keras_io(model) -> ModelIO:
    inputs = getattr(model, "inputs", None)
    outputs = getattr(model, "outputs", None)
    if not inputs or not outputs:
        raise UserError(f"model '{model.name}' has no defined inputs/outputs (a subclassed "
                        "model that was never built): it cannot be trained here")
    return ModelIO(
        tuple(IOSpec(producer(t).name, tuple(t.shape), _dtype_name(t.dtype)) for t in inputs),
        tuple(IOSpec(producer(t).name, tuple(t.shape), _dtype_name(t.dtype), _activation(t))
              for t in outputs),
    )


# TensorFlow's rules for name scopes in a graph: the outermost one, and those inside it
# (an empty name opens no scope). The scope check itself also lets a backslash through,
# but the function's node names are then refused when it runs.
_TF_OUTER_SCOPE = re.compile(r"([A-Za-z0-9.][A-Za-z0-9_./>-]*)?")
_TF_INNER_SCOPE = re.compile(r"[A-Za-z0-9_./>-]*")


def check_traceable(model, what: str) -> None:
    """Raises UserError if TensorFlow cannot trace a call of this Keras model.

    With the TensorFlow backend, Keras opens a `tf.name_scope` named after the model and
    every layer it calls. Inside a `tf.function` TensorFlow accepts only letters, digits
    and `_ . - / >` (the outermost name must not start with `_ - / >`), so a layer named
    "my dense" makes every traced call fail (`model.fit` too) with an error about scopes
    deep inside Keras. Input layers are never called, so their names do not matter.

    Args:
        what: what cannot be done, for the message ("train this model", ...).
    """
    bad = [] if _TF_OUTER_SCOPE.fullmatch(model.name) else [model.name]
    bad += [layer.name for layer in model._flatten_layers(include_self=False, recursive=True)
            if type(layer).__name__ != "InputLayer" and not _TF_INNER_SCOPE.fullmatch(layer.name)]
    if bad:
        names = ", ".join(repr(n) for n in bad[:5]) + (f" and {len(bad) - 5} more"
                                                       if len(bad) > 5 else "")
        raise UserError(f"cannot {what}: TensorFlow refuses the layer name(s) "
                        f"{names} inside a compiled function (allowed: letters, digits and "
                        "_ . - / >; the model's own name must not start with _ - / >), "
                        "and Keras's fit fails the same way. Rename them in Keras and save "
                        "the model again")


def _activation(tensor) -> str | None:
    """The final activation that produced a symbolic output tensor, looking into nested
    models and through weightless pass-through layers (e.g. a stop-gradient)."""
    for _ in range(100):
        origin = inbound_call(tensor)
        if origin is None:
            return None
        node, index = origin
        layer = node.operation
        inner = graph_of(layer)
        if inner is not None:
            tensor = inner.outputs[index]  # nested model: its own output
            continue
        name = type(layer).__name__
        if name == "Softmax":
            return "softmax"
        activation = getattr(layer, "activation", None)
        if activation is not None:
            return getattr(activation, "__name__", str(activation))
        if name in ("StopGradient", "Dropout", "Identity", "Reshape", "Flatten"):
            if len(node.input_tensors) != 1:
                return None
            tensor = node.input_tensors[0]
            continue
        return None
    return None


def _savedmodel_io(wrapper) -> ModelIO:
    signature = wrapper.signatures.get("serving_default")
    if signature is None:
        raise UserError("the SavedModel has no 'serving_default' signature to train through")
    _, kwargs = signature.structured_input_signature
    outputs = signature.structured_outputs
    return ModelIO(
        tuple(IOSpec(name, tuple(spec.shape.as_list()), spec.dtype.name)
              for name, spec in kwargs.items()),
        tuple(IOSpec(name, tuple(outputs[name].shape.as_list()), outputs[name].dtype.name)
              for name in sorted(outputs)),
    )


def forward_fn(document, model=None):
    """A callable `(inputs: list of tensors, training) -> list of output tensors`.

    Args:
        document: the document whose model is called.
        model: a Keras model to call instead (a clone, or a head after feature caching).
    """
    import keras
    import tensorflow as tf

    if model is not None or is_keras(document):
        model = document.model if model is None else model
        struct = inputs_struct(model)

        def forward(inputs, training):
            packed = keras.tree.pack_sequence_as(struct, list(inputs)) if struct is not None \
                else (inputs[0] if len(inputs) == 1 else list(inputs))
            return [tf.cast(t, tf.float32) for t in keras.tree.flatten(model(packed,
                                                                            training=training))]
        return forward

    io = _savedmodel_io(document.model)
    signature = document.model.signatures["serving_default"]
    names = [spec.name for spec in io.inputs]
    out_names = [spec.name for spec in io.outputs]

    def forward_savedmodel(inputs, training):
        del training  # a restored signature has its training mode baked in
        result = signature(**dict(zip(names, inputs, strict=True)))
        return [tf.cast(result[name], tf.float32) for name in out_names]
    return forward_savedmodel
