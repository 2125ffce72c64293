"""The layer/weight tree of a model, with the addresses of docs/architecture.md.

A layer path is the chain of layer names below the top model joined by `/` (the top
model's path is ""); a weight id is `<layer path>:<key>`, the key being the variable's
name, or its path below the layer where names repeat inside that layer.

This module is TensorFlow-free. It reads Keras objects through their public attributes
and a few private layer attributes (no graph attributes: those are read in
`core/graph/functional.py` alone), because Keras has no public way to tell a layer's own
variables from its sub-layers':

- `layer._trainable_variables`, `layer._non_trainable_variables`: the variables the layer
  created itself, in creation order (its sub-layers' not included);
- `layer._layers`: its direct sub-layers, in the order they were assigned;
- `layer._kernel` / `layer._embeddings`: the stored base variable that a LoRA adapter
  (`enable_lora`) leaves frozen (the public `kernel` is the merged value).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from freezestudio.core.graph.functional import class_name, is_model


@dataclass(frozen=True)
class ParamCounts:
    """Parameter counts of a node, as Keras counts them."""

    params: int
    trainable: int

    @property
    def non_trainable(self) -> int:
        return self.params - self.trainable

@dataclass(eq=False)
class WeightNode:
    """One variable as shown in the tree.

    Attributes:
        key: name unique within its layer.
        variable: the Keras (or tf) variable.
        layer: the owning tree node.
        freezable: False for state that is never trained (BatchNorm moving
            statistics, counters, a base kernel under a LoRA adapter): such weights
            are always non-trainable.
    """

    key: str
    variable: Any
    layer: LayerNode
    freezable: bool

    @property
    def id(self) -> str:
        return f"{self.layer.path}:{self.key}"

    @cached_property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self.variable.shape)

    @property
    def dtype(self) -> str:
        dtype = self.variable.dtype
        return getattr(dtype, "name", str(dtype))

    @cached_property
    def size(self) -> int:
        return math.prod(self.shape)


@dataclass(eq=False)
class LayerNode:
    """A layer, a nested model (container) or, for generic SavedModels, a variable scope.

    Attributes:
        name: the layer's name ("" for the top model's path, but its real name here).
        path: address per docs/architecture.md.
        class_name: Keras class name (or "Scope").
        layer: the Keras layer object, None for scopes.
        parent: enclosing node, None for the top model.
        children: nested layers, in model order.
        weights: variables owned by this layer itself (including those of internal
            sub-layers that are not shown as tree nodes, e.g. MultiHeadAttention's).
        is_container: True for models and scopes, whose children are shown.
    """

    name: str
    path: str
    class_name: str
    layer: Any = None
    parent: LayerNode | None = None
    children: list[LayerNode] = field(default_factory=list)
    weights: list[WeightNode] = field(default_factory=list)
    is_container: bool = False

    @cached_property
    def output_shape(self) -> str:
        """The layer's (first call's) output shape as text, '' where Keras does not know
        it (a shape depends on the graph's structure only: computed once)."""
        layer = self.layer
        if layer is None:
            return ""
        try:
            output = layer.output
        except Exception:  # noqa: BLE001 - subclassed/unbuilt layers have no symbolic output
            return ""
        if isinstance(output, list | tuple):
            return format_shape([tuple(t.shape) for t in output])
        if isinstance(output, dict):
            return format_shape([tuple(t.shape) for t in output.values()])
        shape = getattr(output, "shape", None)
        return format_shape(tuple(shape)) if shape is not None else ""

    def walk(self):
        """Yields this node and every node below it, parents before children."""
        yield self
        for child in self.children:
            yield from child.walk()

    def all_weights(self):
        """Every weight at or below this node, each variable once."""
        seen = set()
        for node in self.walk():
            for weight in node.weights:
                if id(weight.variable) not in seen:
                    seen.add(id(weight.variable))
                    yield weight

    def ancestors(self):
        """Enclosing nodes from the parent up to the top."""
        node = self.parent
        while node is not None:
            yield node
            node = node.parent


def format_shape(shape) -> str:
    """`(None, 8)` style text of a shape, or of a list of shapes."""
    if shape is None:
        return ""
    if isinstance(shape, list):
        return ", ".join(format_shape(s) for s in shape)
    dims = ["None" if d is None else str(d) for d in shape]
    return f"({', '.join(dims)}{',' if len(dims) == 1 else ''})"


def child_path(parent_path: str, name: str) -> str:
    return f"{parent_path}/{name}" if parent_path else name


def base_variable(layer):
    """The variable Keras's `enable_lora` adapts: `_embeddings` of an Embedding, else
    `_kernel` (None where the layer has neither)."""
    return getattr(layer, "_embeddings", None) if hasattr(layer, "_embeddings") \
        else getattr(layer, "_kernel", None)


def adapted_kernel(layer):
    """The base kernel (or embeddings) variable of a layer with a live LoRA adapter
    (Keras's `enable_lora`), else None: it is frozen while the adapter is on."""
    return base_variable(layer) if getattr(layer, "lora_enabled", False) else None


def _sublayer_variables(layer, prefix=""):
    """Yields (relative path, variable, created_trainable) for a layer and its sub-layers;
    an adapted base kernel counts as never trainable (`adapted_kernel`)."""
    frozen = adapted_kernel(layer)
    for variable in layer._trainable_variables:
        yield prefix + variable.name, variable, variable is not frozen
    for variable in layer._non_trainable_variables:
        yield prefix + variable.name, variable, False
    for sub in layer._layers:
        yield from _sublayer_variables(sub, f"{prefix}{sub.name}/")


_ADAPTER_PREFIX = "lora_kernel_"
"""LoRA matrices inside a composite layer are always keyed by their path below it
(`query/lora_kernel_a`), so an id does not change when a second adapter is added."""
_AUTO_NAME = re.compile(r"^variable(_\d+)?$")


def _stable_name(name: str) -> str:
    """Keras names unnamed weights `variable`, `variable_1`, ... from a process-wide
    counter, so the suffix differs between openings: drop it (keys are numbered per layer)."""
    return "variable" if _AUTO_NAME.match(name) else name


def _weight_nodes(layer, node: LayerNode, seen: set[int]) -> list[WeightNode]:
    """Weights owned by `layer` (not by child tree nodes), keyed uniquely within the layer."""
    if is_model(layer):
        entries = [(v.name, v, True) for v in layer._trainable_variables]
        entries += [(v.name, v, False) for v in layer._non_trainable_variables]
    else:
        entries = list(_sublayer_variables(layer))
    entries = [e for e in entries if id(e[1]) not in seen]
    names = [_stable_name(variable.name) for _, variable, _ in entries]
    weights, keys = [], set()
    for (rel_path, variable, created_trainable), name in zip(entries, names, strict=True):
        seen.add(id(variable))
        if names.count(name) == 1 and not name.startswith(_ADAPTER_PREFIX):
            key = base = name
        else:
            key = base = rel_path.rpartition("/")[0] + "/" + name if "/" in rel_path else name
        suffix = 1
        while key in keys:  # the same name twice in one (sub-)layer: number in creation order
            key, suffix = f"{base}_{suffix}", suffix + 1
        keys.add(key)
        weights.append(WeightNode(key, variable, node, created_trainable))
    return weights


def rebuild_weights(node: LayerNode, owned_elsewhere: set[int]) -> list[WeightNode]:
    """The weight rows of a layer node read again from its Keras layer (after its
    variables changed, e.g. LoRA adapters added or removed), skipping the variables
    (by `id`) that other nodes own."""
    return _weight_nodes(node.layer, node, set(owned_elsewhere))


def build_keras_tree(model) -> LayerNode:
    """Builds the tree of a Keras model or of its description (`core/graph/description.py`,
    the same surface): nested models are containers, other layers leaves.

    A layer object reached twice (a layer shared between two nested models) is shown at
    its first place only; its variables are owned there.
    """
    seen_vars: set[int] = set()
    seen_layers: set[int] = set()

    def build(layer, path: str, parent: LayerNode | None) -> LayerNode:
        node = LayerNode(
            name=layer.name,
            path=path,
            class_name=class_name(layer),
            layer=layer,
            parent=parent,
            is_container=is_model(layer),
        )
        seen_layers.add(id(layer))
        if node.is_container:
            for sub in layer.layers:
                if id(sub) not in seen_layers:
                    node.children.append(build(sub, child_path(path, sub.name), node))
        node.weights = _weight_nodes(layer, node, seen_vars)
        return node

    return build(model, "", None)
