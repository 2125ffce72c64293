"""LoRA adapters: adding them (Keras's `enable_lora`) and removing them, merged or not.

A selection is a list of tree nodes: a kernel's weight row selects the Keras layer that
owns that kernel (`mha:query/kernel`: the query projection inside a MultiHeadAttention);
a layer selects itself, or every supporting layer inside a composite layer; a container
selects every supporting layer inside it. Other rows (biases, ...) select nothing.
Every check runs before any layer changes, so a failing edit changes nothing.

Keras's own traps handled here (docs/architecture.md, LoRA adapters): a model saved with
adapters reloads with both adapter matrices zeroed (outputs unchanged, but no gradient
ever reaches either again); `revive_dead_adapters` initialises them as `enable_lora`
does (A he-uniform, B zeros), which keeps the outputs and makes them learn again.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from freezestudio.core.errors import PlanError, first_line
from freezestudio.core.model.adapters import Adapter, lora_layers
from freezestudio.core.model.document import Document
from freezestudio.core.model.tree import LayerNode, WeightNode, base_variable

SUPPORTED = "Dense, EinsumDense, Embedding, Conv1D/2D/3D"


@dataclass(frozen=True, eq=False)
class Site:
    """One Keras layer a selection reaches: its tree node and its kernel's row."""

    node: LayerNode
    layer: object
    kernel: WeightNode


def sites(nodes: Iterable[LayerNode | WeightNode]) -> list[Site]:
    """The layers that take an adapter in a selection, each once, in selection order."""
    found: dict[int, Site] = {}
    for node in nodes:
        if isinstance(node, WeightNode):
            entries = [(node.layer, sub, row) for sub, row in lora_layers(node.layer)
                       if row.variable is node.variable]  # rows are rebuilt by edits
        else:
            entries = [(sub_node, sub, row) for sub_node in node.walk()
                       for sub, row in lora_layers(sub_node)]
        for tree_node, layer, row in entries:
            found.setdefault(id(layer), Site(tree_node, layer, row))
    return list(found.values())


def add_adapters(document: Document, nodes, rank: int, alpha: float | None = None,
                 pattern: str | None = None) -> list[Site]:
    """Adds an adapter of `rank` (scale `alpha / rank`; `alpha` defaults to `rank`) to
    every layer the selection reaches; a layer that has one of this rank keeps it.

    Returns:
        The sites reached (the kept ones included).

    Raises:
        PlanError: the selection reaches no layer that takes an adapter, or a layer has
            an adapter of another rank (or alpha), or Keras refuses one (a kernel
            constraint, a quantization mode): named by the kernel's weight id.
    """
    alpha = rank if alpha is None else alpha
    reached = sites(nodes)
    what = f"'{pattern}'" if pattern is not None else "the selection"
    if not reached:
        raise PlanError(f"{what} selects no layer that takes a LoRA adapter ({SUPPORTED})")
    for site in reached:
        layer = site.layer
        if getattr(layer, "lora_enabled", False) and (
                layer.lora_rank != rank or (layer.lora_alpha != alpha and _live(layer))):
            raise PlanError(f"{site.kernel.id} already has a LoRA adapter of rank "
                            f"{layer.lora_rank} (alpha {layer.lora_alpha}); asked for rank "
                            f"{rank} (alpha {alpha}): remove it first")
        if not getattr(layer, "lora_enabled", False) and getattr(layer, "kernel_constraint",
                                                                 None) is not None:
            raise PlanError(f"{site.kernel.id}: Keras's LoRA is incompatible with kernel "
                            "constraints (remove the layer's kernel_constraint)")
    changed = []
    for site in reached:
        if getattr(site.layer, "lora_enabled", False):
            if not _live(site.layer):
                site.layer.lora_alpha = alpha
            continue
        try:
            site.layer.enable_lora(rank, lora_alpha=alpha)
        except (ValueError, NotImplementedError) as exc:
            raise PlanError(f"{site.kernel.id}: {first_line(exc)}") from None
        changed.append(site.node)
    if changed:
        document.adapters_changed(dict.fromkeys(changed))
    return reached


def remove_adapters(document: Document, nodes, merge: bool) -> list[Adapter]:
    """Removes the adapters the selection reaches.

    Args:
        merge: True folds each adapter into its kernel (`kernel + alpha/rank * A @ B`,
            the layer computes the same after); False discards it (the layer computes
            with its base kernel again).

    Returns:
        The adapters removed (empty if the selection reaches none).
    """
    import keras

    targets = {id(site.layer) for site in sites(nodes)}
    removed = [a for a in document.adapters() if id(a.layer) in targets]
    for adapter in removed:
        layer = adapter.layer
        base = base_variable(layer)
        if merge:
            base.assign(keras.ops.cast(computed_kernel(layer), base.dtype))
        del layer.lora_kernel_a  # Keras's __delattr__ untracks the variables
        del layer.lora_kernel_b
        layer.lora_enabled = False
        layer.lora_rank = None
        layer.lora_alpha = None
        base.trainable = True
    if removed:
        document.adapters_changed(dict.fromkeys(a.kernel.layer for a in removed))
    return removed


def computed_kernel(layer):
    """The kernel (or embeddings) a layer computes with: with a live adapter, the base
    plus `alpha / rank * A @ B` (Keras's public `kernel`/`embeddings` property)."""
    return layer.embeddings if hasattr(layer, "_embeddings") else layer.kernel


def _live(layer) -> bool:
    """Whether an adapter has any non-zero entry (Keras's reload leaves both zero)."""
    return bool(np.any(layer.lora_kernel_a.numpy()) or np.any(layer.lora_kernel_b.numpy()))


def revive_dead_adapters(document: Document) -> list[Adapter]:
    """Gives every adapter whose matrices are both zero (Keras's state after loading a
    saved LoRA layer) a fresh start as `enable_lora` makes it: A he-uniform, B zeros.
    The layers' outputs do not change. Returns the adapters revived. A model without
    adapters returns at once, without importing Keras (`inspect`'s TensorFlow-free path)."""
    revived = [a for a in document.adapters() if not _live(a.layer)]
    if not revived:
        return []
    import keras

    for adapter in revived:
        variable = adapter.layer.lora_kernel_a
        variable.assign(keras.initializers.get("he_uniform")(variable.shape,
                                                             dtype=variable.dtype))
    document.weights_changed(notify=False)
    return revived


@contextlib.contextmanager
def merged_adapters(adapters: list[Adapter]):
    """For the block, the adapted layers are plain layers with merged kernels: no adapter
    variables tracked, no `lora_rank` in their config (for deployment exports and merged
    saves). After it, every layer is exactly as before: the same variable objects, in the
    same order, the base kernels bit-identical. The document is not told (nothing it
    shows changes for good), so this may run on a worker thread."""
    import keras

    kept = []
    try:
        for adapter in adapters:
            layer = adapter.layer
            base = base_variable(layer)
            kept.append((layer, base, np.array(base.numpy(), copy=True),
                         list(layer._trainable_variables), list(layer._non_trainable_variables),
                         (layer.lora_kernel_a, layer.lora_kernel_b, layer.lora_rank,
                          layer.lora_alpha)))
            base.assign(keras.ops.cast(computed_kernel(layer), base.dtype))
            del layer.lora_kernel_a
            del layer.lora_kernel_b
            layer.lora_enabled, layer.lora_rank = False, None
        yield
    finally:
        for layer, base, value, trainable, non_trainable, state in reversed(kept):
            layer._tracker.unlock()
            layer.lora_kernel_a, layer.lora_kernel_b = state[0], state[1]
            layer._tracker.lock()
            layer._trainable_variables[:] = trainable
            layer._non_trainable_variables[:] = non_trainable
            layer.lora_enabled, layer.lora_rank, layer.lora_alpha = True, state[2], state[3]
            base.assign(value)


@contextlib.contextmanager
def keras_file_values(adapters: list[Adapter]):
    """For the block, each adapter holds what Keras's own `.keras` save writes: the merged
    kernel, both matrices zero (so that a legacy `.h5`, which stores the raw variables,
    reloads in plain Keras with the outputs it had, whatever alpha Keras's reload picks).
    After it, the values are exactly as before."""
    import keras

    kept = []
    try:
        for adapter in adapters:
            layer = adapter.layer
            variables = (base_variable(layer), layer.lora_kernel_a, layer.lora_kernel_b)
            kept.append([(v, np.array(v.numpy(), copy=True)) for v in variables])
            merged = keras.ops.cast(computed_kernel(layer), variables[0].dtype)
            variables[0].assign(merged)
            for matrix in variables[1:]:
                matrix.assign(np.zeros(matrix.shape, matrix.dtype))
        yield
    finally:
        for pairs in kept:
            for variable, value in pairs:
                variable.assign(value)


def restore_adapter_values(document: Document, entries: list[dict]) -> list[str]:
    """Puts adapters' stored state back after a load (Keras's leaves both matrices zero,
    the kernel merged and, for Dense, alpha reset to rank).

    Args:
        entries: `{"id", "alpha", "kernel", "a", "b"}` per adapter (`files/lora_store.py`).

    Returns:
        The ids of the entries that matched no adapter of this shape (nothing restored).
    """
    by_id = {a.id: a for a in document.adapters()}
    missed = []
    for entry in entries:
        adapter = by_id.get(entry["id"])
        values = (entry["kernel"], entry["a"], entry["b"])
        rows = None if adapter is None else (adapter.kernel, adapter.a, adapter.b)
        if rows is None or any(tuple(r.shape) != tuple(np.shape(v))
                               for r, v in zip(rows, values, strict=True)):
            missed.append(entry["id"])
            continue
        for row, value in zip(rows, values, strict=True):
            row.variable.assign(value)
        adapter.layer.lora_alpha = entry["alpha"]
    document.invalidate_graph()  # the adapters' alpha is part of what derived state shows
    return missed


@dataclass(frozen=True)
class AdapterState:
    """A copy of a document's adapters, for undo: each adapter's `(id, rank, alpha)` and
    the values of the kernels and matrices named (`kernels` also holds kernels that
    have no adapter in this state but have one in the state it is paired with)."""

    adapters: tuple
    values: dict

    @classmethod
    def take(cls, document: Document, kernels: Iterable[str] = ()) -> AdapterState:
        adapters = document.adapters()
        values = {a.id: np.array(base_variable(a.layer).numpy(), copy=True) for a in adapters}
        for adapter in adapters:
            values[adapter.a.id] = np.array(adapter.a.variable.numpy(), copy=True)
            values[adapter.b.id] = np.array(adapter.b.variable.numpy(), copy=True)
        for kernel in kernels:
            values.setdefault(kernel, np.array(document.weight(kernel).variable.numpy(),
                                               copy=True))
        return cls(tuple((a.id, a.rank, a.alpha) for a in adapters), values)

    @property
    def kernel_ids(self) -> list[str]:
        return [key for key, *_ in self.adapters]

    def restore(self, document: Document) -> None:
        """Makes the document's adapters and those values exactly this state's."""
        wanted = {key: (rank, alpha) for key, rank, alpha in self.adapters}
        stale = [a.kernel for a in document.adapters()
                 if (a.rank, a.alpha) != wanted.get(a.id, (a.rank, a.alpha)) or
                 a.id not in wanted]
        if stale:
            remove_adapters(document, stale, merge=False)
        present = {a.id for a in document.adapters()}
        for key, (rank, alpha) in wanted.items():
            if key not in present:
                add_adapters(document, [document.weight(key)], rank, alpha)
        for key, value in self.values.items():
            document.weight(key).variable.assign(value)
        for adapter in document.adapters():
            adapter.layer.lora_alpha = wanted[adapter.id][1]
        document.weights_changed()


ATTENTION_PROJECTIONS = ("query", "value")
"""The projections "Add LoRA adapters to attention projections" adapts (the LoRA
paper's choice, and keras_hub's `default_lora_layer_names`)."""


def attention_kernels(node: LayerNode) -> list[WeightNode]:
    """The kernels of the query and value projections of every MultiHeadAttention-like
    layer at or below `node` (a layer holding EinsumDense/Dense sub-layers named
    `query`/`value`, as Keras's MultiHeadAttention and keras_hub's encoders do)."""
    found = []
    for sub_node in node.walk():
        for layer, kernel in lora_layers(sub_node):
            if layer is not sub_node.layer and layer.name in ATTENTION_PROJECTIONS:
                found.append(kernel)  # a projection inside a composite layer
    return found
