"""Recurrent layers for TFLite: rebuild them unrolled, with the same weights.

Keras 3 runs LSTM/GRU/SimpleRNN (and Bidirectional wrappers of them) as a TensorFlow while
loop over TensorList ops. TFLite's built-in op set cannot lower that loop: it needs the
Flex delegate, which the stock `tf.lite.Interpreter` lacks. For a fixed sequence length the
loop can be unrolled (`unroll=True`), which computes the same thing with built-in ops only.
A layer over sequences of variable length, or hidden inside a subclassed layer where the
graph cannot be rebuilt, cannot be exported: the error says why.
"""

from __future__ import annotations

from freezestudio.core.errors import UserError
from freezestudio.core.graph.functional import graph_of, layer_calls

WHY = ("Keras 3 runs recurrent layers as a TensorFlow while loop that TFLite's built-in ops "
       "cannot express (it needs the Flex delegate, which the stock tf.lite.Interpreter lacks)")


def _is_recurrent(layer) -> bool:
    import keras

    return isinstance(layer, keras.layers.RNN | keras.layers.Bidirectional)


def _is_unrolled(layer) -> bool:
    import keras

    if isinstance(layer, keras.layers.Bidirectional):
        return bool(layer.forward_layer.unroll and layer.backward_layer.unroll)
    return bool(layer.unroll)


def rolled_layers(model, prefix: str = "") -> list[tuple[str, object, bool]]:
    """Recurrent layers that run as a loop: (path, layer, in a rebuildable graph)."""
    found = []
    for layer in getattr(model, "layers", []):
        path = f"{prefix}/{layer.name}" if prefix else layer.name
        if _is_recurrent(layer):
            if not _is_unrolled(layer):
                found.append((path, layer, True))
        elif graph_of(layer) is not None:
            found += rolled_layers(layer, path)
        else:
            found += [(f"{path}/{sub.name}", sub, False)
                      for sub in layer._flatten_layers(include_self=False, recursive=True)
                      if _is_recurrent(sub) and not _is_unrolled(sub)]
    return found


def _sequence_lengths(layer) -> set:
    return {node.input_tensors[0].shape[1] for node in layer_calls(layer)
            if node.input_tensors and len(node.input_tensors[0].shape) > 1}


def unrolled_for_tflite(model):
    """The model with every looping recurrent layer rebuilt with `unroll=True`.

    Returns:
        (model, notes): the input model itself when nothing needs unrolling.

    Raises:
        UserError: a recurrent layer has a variable sequence length or cannot be rebuilt.
    """
    rolled = rolled_layers(model)
    if not rolled:
        return model, []
    for path, layer, rebuildable in rolled:
        if not rebuildable:
            raise UserError(f"cannot export to TFLite: {WHY}, and the {type(layer).__name__} "
                            f"'{path}' sits inside a subclassed layer, so FreezeStudio cannot "
                            "rebuild it unrolled")
        if None in _sequence_lengths(layer):
            raise UserError(f"cannot export to TFLite: {WHY}; the {type(layer).__name__} "
                            f"'{path}' runs over sequences of variable length, so it cannot be "
                            "unrolled either (give the model a fixed-length Input, e.g. "
                            "keras.Input((40,), dtype='int32'), and export again)")
    pairs: list = []
    clone = _clone(model, pairs)
    for old, new in pairs:
        new.set_weights(old.get_weights())
    names = ", ".join(path for path, _, _ in rolled[:4]) + (" ..." if len(rolled) > 4 else "")
    lengths = sorted({n for _, layer, _ in rolled for n in _sequence_lengths(layer)})
    return clone, [f"{len(rolled)} recurrent layer(s) unrolled for TFLite ({names}; same weights, "
                   f"sequence length {', '.join(map(str, lengths))}): {WHY}"]


def _clone(model, pairs: list):
    import keras

    def clone_layer(layer):
        if _is_recurrent(layer) and not _is_unrolled(layer):
            new = type(layer).from_config(_unrolled_config(layer))
            pairs.append((layer, new))
            return new
        if graph_of(layer) is not None and rolled_layers(layer):
            return _clone(layer, pairs)
        return layer

    return keras.models.clone_model(model, clone_function=clone_layer)


def _unrolled_config(layer) -> dict:
    import keras

    config = layer.get_config()
    if isinstance(layer, keras.layers.Bidirectional):
        for key in ("layer", "backward_layer"):
            if config.get(key):
                config[key]["config"]["unroll"] = True
    else:
        config["unroll"] = True
    return config
