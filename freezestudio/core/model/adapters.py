"""LoRA adapters as the tree sees them: which layers can take one, which have one.

Keras 3's `enable_lora(rank, lora_alpha)` (Dense, EinsumDense, Embedding and the
convolutions) adds two float32 variables `lora_kernel_a` (in x rank) and `lora_kernel_b`
(rank x out) beside the base kernel, freezes the base kernel and computes with
`kernel + (alpha / rank) * A @ B`. A projection inside a composite layer (the `query`
EinsumDense of a MultiHeadAttention) is addressed by its kernel's weight id.

This module is TensorFlow-free: it reads the layers' public LoRA attributes (`lora_enabled`,
`lora_rank`, `lora_alpha`, `lora_kernel_a/b`) and the base variables `_kernel` /
`_embeddings` (through `tree.base_variable`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from freezestudio.core.graph.description import is_described
from freezestudio.core.graph.functional import is_model
from freezestudio.core.model.tree import LayerNode, WeightNode, adapted_kernel, base_variable


@dataclass(frozen=True, eq=False)
class Adapter:
    """A live adapter on one Keras layer.

    Attributes:
        kernel: the base kernel's weight row (frozen while the adapter is on); its id
            is the adapter's address.
        a, b: the rows of `lora_kernel_a` and `lora_kernel_b`.
        layer: the Keras layer that has the adapter (possibly inside `kernel.layer`).
        rank, alpha: as given to `enable_lora`; the delta is `alpha / rank * A @ B`.
    """

    kernel: WeightNode
    a: WeightNode
    b: WeightNode
    layer: Any
    rank: int
    alpha: float

    @property
    def id(self) -> str:
        return self.kernel.id


def keras_sublayers(layer):
    """A Keras layer and every layer inside it (through `_layers`), each once, outer
    first; nested models are not entered (they are tree nodes of their own). A layer read
    from a config (`core/graph/description.py`) has no adapters and no layers inside, and
    asking must not import Keras (`inspect`'s TensorFlow-free path)."""
    if is_described(layer):
        yield layer
        return
    seen, stack = set(), [layer]
    while stack:
        current = stack.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        stack.extend(sub for sub in current._layers if not is_model(sub))


def takes_lora(layer) -> bool:
    """Whether a Keras layer has Keras's `enable_lora` (and is not a model)."""
    return callable(getattr(layer, "enable_lora", None)) and not is_model(layer)


def lora_layers(node: LayerNode) -> list:
    """The Keras layers of a tree node (its own layer and the layers inside it, not those
    of child nodes) that take an adapter, each with its base kernel's weight row:
    `[(keras_layer, kernel_row), ...]`."""
    if node.layer is None or node.is_container:
        return []
    rows = {id(w.variable): w for w in node.weights}
    return [(sub, rows[id(base_variable(sub))]) for sub in keras_sublayers(node.layer)
            if takes_lora(sub) and getattr(sub, "built", False)
            and id(base_variable(sub)) in rows]


def find_adapters(root: LayerNode) -> list[Adapter]:
    """Every live adapter in the tree, in tree order."""
    found = []
    for node in root.walk():
        if node.layer is None or node.is_container:
            continue
        rows = {id(w.variable): w for w in node.weights}
        for sub in keras_sublayers(node.layer):
            kernel = adapted_kernel(sub)
            if kernel is None or id(kernel) not in rows:
                continue
            found.append(Adapter(rows[id(kernel)], rows[id(sub.lora_kernel_a)],
                                 rows[id(sub.lora_kernel_b)], sub, int(sub.lora_rank),
                                 sub.lora_alpha))
    return found
