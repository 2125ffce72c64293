"""Models written by tf.keras 2.x, made readable by Keras 3.

Keras 3 cannot load a tf.keras SavedModel at all, and reads tf.keras `.h5` files only
partly. The path taken here: tf_keras (Keras 2) loads a SavedModel and re-saves it as
`.h5`; every tf.keras `.h5` is then adapted in a temporary copy (`adapt_h5_config`) and
loaded with Keras 3. The caller has already refused Lambda layers unless trusted: tf_keras
runs their code while loading.
"""

from __future__ import annotations

import inspect
import json
import shutil
import tempfile
from pathlib import Path

_LAYER_SHAPE_OPTIONS = {"input_dim", "input_shape", "batch_input_shape", "batch_size"}
_STRUCTURAL = {"Functional", "Model", "Sequential", "InputLayer"}


def written_by_tf_keras(h5_path: Path) -> bool:
    import h5py

    with h5py.File(h5_path, "r") as handle:
        version = handle.attrs.get("keras_version", b"")
    version = version.decode() if isinstance(version, bytes) else str(version)
    return version.startswith("2.")


def load_h5(path: Path, trust: bool, custom: dict, notes: list):
    """Loads a tf.keras `.h5` with Keras 3 from an adapted copy."""
    with tempfile.TemporaryDirectory(prefix="freezestudio-") as tmp:
        copy = Path(tmp) / "copy.h5"
        shutil.copyfile(path, copy)
        return _load_adapted(copy, trust, custom, notes)


def load_savedmodel(path: Path, trust: bool, custom: dict, notes: list):
    """Loads a tf.keras SavedModel with tf_keras, converts it through `.h5` to Keras 3."""
    import tf_keras

    legacy = tf_keras.models.load_model(str(path), compile=False, custom_objects=custom)
    with tempfile.TemporaryDirectory(prefix="freezestudio-") as tmp:
        converted = Path(tmp) / "converted.h5"
        legacy.save(converted, save_format="h5")
        return _load_adapted(converted, trust, custom, notes)


def _load_adapted(h5_path: Path, trust: bool, custom: dict, notes: list):
    import keras

    notes += adapt_h5_config(h5_path)
    return keras.saving.load_model(h5_path, custom_objects=custom, compile=False,
                                   safe_mode=not trust)


def adapt_h5_config(h5_path: Path) -> list[str]:
    """Rewrites a tf.keras model config in place so Keras 3 reads it; returns notes."""
    import h5py

    with h5py.File(h5_path, "r+") as handle:
        config = json.loads(handle.attrs["model_config"])
        _shift_nested_refs(config)
        _unwrap_single_refs(config)
        _single_batchnorm_axis(config)
        dropped = _drop_unknown_options(config)
        handle.attrs["model_config"] = json.dumps(config)
    notes = [f"ignored tf.keras-only option(s) {', '.join(sorted(options))} of {layer}"
             for layer, options in dropped.items()]
    notes += [f"tf.keras called '{name}' with training=False, which kept its "
              "BatchNormalization layers in inference mode even when unfrozen; Keras 3 "
              "does not: keep those BatchNormalization layers frozen to get the same "
              "fine-tuning" for name in _called_in_inference_mode(config)]
    return notes


def _called_in_inference_mode(model_config: dict) -> list[str]:
    """Names of the layers a tf.keras functional graph calls with `training=False` (the
    fine-tuning recipe `base(x, training=False)`): the call's keyword arguments are the
    fourth item of each inbound reference."""
    names = []
    for node in _dicts(model_config):
        config = node.get("config")
        for call in node.get("inbound_nodes") or []:
            refs = call if isinstance(call, list) else []
            if isinstance(config, dict) and any(
                    isinstance(ref, list) and len(ref) == 4 and isinstance(ref[3], dict)
                    and ref[3].get("training") is False for ref in refs):
                names.append(config.get("name"))
                break
    return list(dict.fromkeys(names))


def _shift_nested_refs(model_config: dict) -> None:
    """tf.keras gives every built nested model a call node of its own, so its first call
    inside another model is node 1. Keras 3 creates no such node: it compensates for
    Functional models in output references only, and never for Sequential. Shift the
    references Keras 3 would otherwise miss down by one."""
    config = model_config.get("config", {})
    if not isinstance(config, dict) or "layers" not in config:
        return
    sequential = {layer["config"]["name"] for layer in config["layers"]
                  if layer.get("class_name") == "Sequential" and _has_input(layer)}
    functional = {layer["config"]["name"] for layer in config["layers"]
                  if layer.get("class_name") in ("Functional", "Model")}

    def shift(ref, names):
        if isinstance(ref, list) and len(ref) >= 3 and isinstance(ref[0], str):
            if ref[0] in names and ref[1] > 0:
                ref[1] -= 1
        elif isinstance(ref, list):
            for item in ref:
                shift(item, names)

    for layer in config["layers"]:
        shift(layer.get("inbound_nodes", []), sequential | functional)
        _shift_nested_refs(layer)
    shift(config.get("output_layers", []), sequential)


def _dicts(node):
    """Every dict in a JSON structure, outer ones first (safe to change in place)."""
    if isinstance(node, dict):
        yield node
        children = node.values()
    elif isinstance(node, list):
        children = node
    else:
        return
    for child in list(children):
        yield from _dicts(child)


def _unwrap_single_refs(model_config: dict) -> None:
    """tf.keras writes a functional model's single input or output as a list of one
    reference and reads either form as the tensor itself. Keras 3 writes a single tensor as
    the bare reference and reads a list of one as a list: the nested model's symbolic
    output is then a list, and the layer after it in a Sequential fails to build
    ("Cannot convert '((None, 6), 2)' to a shape"). Unwrap, at every depth."""
    for node in _dicts(model_config):
        for key in ("input_layers", "output_layers"):
            refs = node.get(key)
            if isinstance(refs, list) and len(refs) == 1 and _is_ref(refs[0]):
                node[key] = refs[0]


def _single_batchnorm_axis(model_config: dict) -> None:
    """tf.keras writes BatchNormalization's axis as a list (`[3]`); Keras 3 takes an int.
    Its legacy loader converts it, but a functional model nested in a Sequential is read
    by the current deserializer, which fails on the list."""
    for node in _dicts(model_config):
        config = node.get("config")
        if node.get("class_name") == "BatchNormalization" and isinstance(config, dict):
            axis = config.get("axis")
            if isinstance(axis, list) and len(axis) == 1:
                config["axis"] = axis[0]


def _is_ref(value) -> bool:
    return isinstance(value, list) and len(value) == 3 and isinstance(value[0], str)


def _has_input(sequential_config: dict) -> bool:
    layers = sequential_config.get("config", {}).get("layers", [])
    return bool(layers) and (layers[0].get("class_name") == "InputLayer"
                             or "batch_input_shape" in layers[0].get("config", {}))


def _accepted_options(cls) -> set[str]:
    """Constructor arguments a Keras 3 layer class accepts, through its base classes."""
    import keras

    names = set(_LAYER_SHAPE_OPTIONS)
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is not None:
            names |= {name for name, p in inspect.signature(init).parameters.items()
                      if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
        if klass is keras.layers.Layer:
            break
    return names


def _drop_unknown_options(model_config: dict) -> dict[str, set[str]]:
    """Removes options of built-in layers that Keras 3 no longer has (e.g. `groups` of
    DepthwiseConv2D, `rng_type` of RandomFlip), which would make deserialization fail.
    Returns what was dropped, per layer."""
    import keras

    dropped = {}
    for node in _dicts(model_config):
        cls = getattr(keras.layers, str(node.get("class_name")), None)
        config = node.get("config")
        if (isinstance(config, dict) and inspect.isclass(cls)
                and issubclass(cls, keras.layers.Layer) and node["class_name"] not in _STRUCTURAL):
            unknown = set(config) - _accepted_options(cls)
            for key in unknown:
                del config[key]
            if unknown:
                dropped.setdefault(f"{node['class_name']} '{config.get('name')}'", set()).update(
                    unknown)
    return dropped
