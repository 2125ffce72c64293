"""Reads a `.keras` archive's model as a description, without TensorFlow or Keras.

The archive's `config.json` gives the layers, their nesting, flags and calls; the
weights file `model.weights.h5` gives each variable's shape and dtype (read with h5py,
no values); `layer_variables` names them. The result is a `DescribedModel`
(`core/graph/description.py`) that the one tree builder and the one gradient-flow
analysis read as they read a loaded model, so `inspect` prints exactly what a full load
prints (docs/architecture.md, "Config-first opening").

Where the config alone cannot tell what Keras would build, the reader raises
`NotDescribable` and the caller loads the model instead: a subclassed or custom model or
layer, a layer it does not know (`layer_variables`), a Sequential without an input, an
`Operation` that is not a layer, a weights file that disagrees with the config.

Stop-gradient layers (FreezeStudio's `StopGradient`) are left out of the described graph
as the loader leaves them out of the loaded one; `read_description` returns the outputs
they followed, as (call, output index).
"""

from __future__ import annotations

import zipfile
from pathlib import Path

from freezestudio.core.files.archive_member import open_member
from freezestudio.core.files.layer_variables import UnknownLayer, layer_variables
from freezestudio.core.graph.description import (
    DescribedCall,
    DescribedLayer,
    DescribedModel,
    DescribedTensor,
    DescribedVariable,
)
from freezestudio.core.graph.functional import inbound_call, layer_calls, producer

_WEIGHTS_MEMBER = "model.weights.h5"
_MODELS = ("Functional", "Sequential")
_STOP_GRADIENT = "freezestudio>StopGradient"


class NotDescribable(Exception):
    """The config does not tell the model exactly: load it instead (the reason is said)."""


def read_description(path: Path, config: dict) -> tuple[DescribedModel, set]:
    """The description of the model in the archive at `path`, whose parsed (and checked,
    `code_scan.stored_configs`) `config.json` is `config`.

    Returns:
        (the model without stop-gradient layers, {(id(call), output index)} of the outputs
        the stop-gradient layers followed).

    Raises:
        NotDescribable: see the module docstring.
    """
    import h5py

    try:
        with zipfile.ZipFile(path) as archive, \
                open_member(path, archive, _WEIGHTS_MEMBER) as member, \
                h5py.File(member, "r") as weights:
            reader = _Reader(weights)
            model = reader.layer(config, weights.get("/"))
    except (KeyError, TypeError, ValueError, IndexError, AttributeError,
            UnknownLayer) as exc:
        raise NotDescribable(f"{type(exc).__name__}: {exc}") from None
    if not isinstance(model, DescribedModel):
        raise NotDescribable("the archive holds a layer, not a model")
    return model, reader.cut


def _flag(config: dict) -> bool:
    return bool(config.get("trainable", True))


def _compute_dtype(config: dict) -> str:
    """The compute dtype of a layer's dtype policy (config form of Keras 3)."""
    policy = config.get("dtype") or "float32"
    if isinstance(policy, dict):
        policy = policy.get("config", {}).get("name", "float32")
    if isinstance(policy, str) and policy.startswith("mixed_"):
        return policy.removeprefix("mixed_")
    return policy if isinstance(policy, str) else "float32"


def _snake_case(name: str) -> str:
    """`keras.src.utils.naming.to_snake_case`: how the weights file names a layer's group."""
    import re

    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


class _Reader:
    def __init__(self, weights):
        self.weights = weights
        self.cut: set = set()

    def layer(self, entry: dict, group) -> DescribedLayer:
        """A layer or model from its serialised entry; `group` its weights-file group
        (None where the file holds none, e.g. an InputLayer of a Sequential)."""
        class_name = entry["class_name"]
        config = entry["config"]
        module = entry.get("module") or ""
        if class_name in _MODELS:
            if not module.startswith("keras"):
                raise NotDescribable(f"model class {module}.{class_name}")
            return self.model(class_name, config, group)
        if entry.get("registered_name") == _STOP_GRADIENT:
            return DescribedLayer(config["name"], "StopGradient", _flag(config),
                                  stop_gradient=True)
        if module != "keras.layers" or entry.get("registered_name") not in (None, class_name):
            raise NotDescribable(f"layer class {module}.{class_name}")
        stored = _group_vars(group)
        names = layer_variables(class_name, config, len(stored))
        flag = _flag(config)
        variables = [(DescribedVariable(name, data.shape, data.dtype.name, created and flag),
                      created) for (name, created), data in zip(names, stored, strict=True)]
        if any(v.dtype not in _STANDARD_DTYPES for v, _ in variables):
            raise NotDescribable(f"an unusual variable dtype in '{config['name']}'")
        layer = DescribedLayer(config["name"], class_name, flag, variables)
        layer.output_dtype = _compute_dtype(config)
        if class_name == "InputLayer":
            layer.output_dtype = config.get("dtype") or "float32"
            shape = config.get("batch_shape") or [None, *config.get("shape", [])]
            DescribedCall(layer, [], [DescribedTensor(shape, layer.output_dtype)], is_input=True)
        return layer

    def model(self, class_name: str, config: dict, group) -> DescribedModel:
        entries = config["layers"]
        if class_name == "Sequential":
            return self.sequential(config, entries, group)
        layers_group = group.get("layers") if group is not None else None
        names = _group_names([e["class_name"] for e in entries], layers_group)
        layers = {}
        for entry, name in zip(entries, names, strict=True):
            layers[entry["config"]["name"]] = (self.layer(entry, _child(layers_group, name)),
                                               entry)
        # Each call in config order; tensors are made by the call that produces them.
        tensors: dict[tuple, DescribedTensor] = {
            (name, 0, 0): layer_calls(layer)[0].outputs[0]
            for name, (layer, _) in layers.items() if layer.class_name == "InputLayer"}
        pending = [(layer, entry, k) for layer, entry in layers.values()
                   for k in range(len(entry.get("inbound_nodes", [])))]
        calls_done: dict[str, int] = {}
        while pending:
            progress = []
            for item in pending:
                if self.call(item, layers, tensors, calls_done):
                    progress.append(item)
            if not progress:
                raise NotDescribable("a call's inputs are never produced")
            pending = [item for item in pending if item not in progress]
        inputs = [tensors[tuple(ref)] for ref in _refs(config["input_layers"])]
        outputs = [tensors[tuple(ref)] for ref in _refs(config["output_layers"])]
        for tensor in outputs:
            if tensor.dtype is None:
                tensor.dtype = producer(tensor).output_dtype
        return DescribedModel(config["name"], "Functional", _flag(config), inputs, outputs)

    def sequential(self, config: dict, entries: list, group) -> DescribedModel:
        if not entries or entries[0]["class_name"] != "InputLayer":
            raise NotDescribable("a Sequential without an input layer")
        layers_group = group.get("layers") if group is not None else None
        names = _group_names([e["class_name"] for e in entries[1:]], layers_group)
        tensor = layer_calls(self.layer(entries[0], None))[0].outputs[0]
        inputs = [tensor]
        for entry, name in zip(entries[1:], names, strict=True):
            layer = self.layer(entry, _child(layers_group, name))
            if isinstance(layer, DescribedModel) and len(layer.inputs) != 1:
                raise NotDescribable("a Sequential holding a multi-input model")
            dtype = layer.outputs[0].dtype if isinstance(layer, DescribedModel) \
                else _call_dtype(layer, [tensor])
            output = DescribedTensor(None, dtype)
            if layer.freezestudio_stop_gradient:
                raise NotDescribable("a stop-gradient layer in a Sequential")
            DescribedCall(layer, [tensor], [output])
            tensor = output
        return DescribedModel(config["name"], "Sequential", _flag(config), inputs, [tensor])

    def call(self, item, layers: dict, tensors: dict, calls_done: dict) -> bool:
        """Makes the k-th call of a layer once its inputs exist; False if they do not yet
        (or its earlier calls are not made)."""
        layer, entry, k = item
        name = entry["config"]["name"]
        if calls_done.get(name, 0) != k:
            return False
        node = entry["inbound_nodes"][k]
        refs = _flat_tensor_refs(node.get("args", []), node.get("kwargs", {}))
        if any(ref not in tensors for ref, _, _ in refs):
            return False
        inputs = [tensors[ref] for ref, _, _ in refs]
        for (_, dtype, shape), tensor in zip(refs, inputs, strict=True):
            if tensor.dtype is None:
                tensor.dtype, tensor.shape = dtype, tuple(shape) if shape is not None else None
        calls_done[name] = k + 1
        if layer.freezestudio_stop_gradient:
            (source,) = inputs
            tensors[(name, k, 0)] = source
            node, index = inbound_call(source)
            self.cut.add((id(node), index))
            return True
        if isinstance(layer, DescribedModel):
            outputs = [DescribedTensor(t.shape, t.dtype) for t in layer.outputs]
        else:
            outputs = [DescribedTensor(None, None)]
        for index, tensor in enumerate(outputs):
            tensors[(name, k, index)] = tensor
        DescribedCall(layer, inputs, outputs)
        return True



_STANDARD_DTYPES = frozenset({"float16", "float32", "float64", "int8", "int16", "int32",
                              "int64", "uint8", "bool", "complex64", "complex128"})


def _call_dtype(layer: DescribedLayer, inputs: list) -> str:
    """The dtype of a Sequential layer's output: Keras casts floating inputs to the
    layer's compute dtype; a weightless layer passes other inputs through."""
    dtype = inputs[0].dtype or "float32"
    if layer.class_name in ("Embedding",) or "float" in dtype or layer.weights:
        return layer.output_dtype
    return dtype


def _group_vars(group) -> list:
    """A layer group's stored variables, `vars/0`, `vars/1`, ... in order."""
    if group is None:
        return []
    variables = group.get("vars")
    if variables is None:
        return []
    count = len(variables.keys())
    return [variables[str(i)] for i in range(count)]


def _group_names(class_names: list[str], layers_group) -> list[str]:
    """The weights-file group of each layer, named as Keras's saver names them."""
    used: dict[str, int] = {}
    names = []
    for class_name in class_names:
        name = _snake_case(class_name)
        if name in used:
            used[name] += 1
            name = f"{name}_{used[name]}"
        else:
            used[name] = 0
        names.append(name)
    return names


def _child(group, name: str):
    return group.get(name) if group is not None else None


def _is_ref(value) -> bool:
    return (isinstance(value, list) and len(value) == 3 and isinstance(value[0], str)
            and isinstance(value[1], int) and isinstance(value[2], int))


def _refs(structure) -> list:
    """The flat [layer, node, tensor] references of a model's input or output structure
    (dict values in sorted key order, as `keras.tree.flatten`)."""
    if _is_ref(structure):
        return [structure]
    if isinstance(structure, dict):
        return [r for key in sorted(structure) for r in _refs(structure[key])]
    if isinstance(structure, list):
        return [r for item in structure for r in _refs(item)]
    raise NotDescribable("an input or output structure it does not know")


def _flat_tensor_refs(args, kwargs) -> list:
    """((layer, node, tensor), dtype, shape) of every tensor among a call's arguments, in the
    order of `keras.tree.flatten((args, kwargs))`."""
    found = []

    def visit(value):
        if isinstance(value, dict):
            if value.get("class_name") == "__keras_tensor__":
                config = value["config"]
                found.append((tuple(config["keras_history"]), config.get("dtype"),
                              config.get("shape")))
                return
            if "class_name" in value and "config" in value:
                raise NotDescribable(f"an argument object {value['class_name']}")
            for key in sorted(value):
                visit(value[key])
        elif isinstance(value, list | tuple):
            for item in value:
                visit(item)

    visit([args, kwargs])
    return found
