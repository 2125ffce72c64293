"""The edit document: a loaded model, its tree and its freeze state.

The document is the single source of truth, and the only writer of its state: other
modules change it through its methods (`set_trainable`, `restore`, `replace_graph`,
`adapters_changed`, `mark_saved`, ...), never by writing its attributes. Freeze state is
kept per weight (every weight that can be trained at all); a layer's or container's state
is derived from the weights inside it (True, False or "partial"), so "unfreeze one layer
in a frozen backbone" and "freeze one bias beside a trainable kernel" are plain edits.
Weightless layers (Dropout, pooling, ...) keep a flag of their own. After every edit the
state is written into the Keras objects (`write_flags`), so `model.trainable_weights` is
exactly what the tree shows, and `needs_recompile` is raised (Keras fixes the trainable
set at `compile()`). Listeners get a `DocumentChange` saying what changed. Derived state
(trainable state, counts, adapters; what receives gradient: `core/model/gradient_view.py`)
is computed once per edit; a stop-gradient edit keeps what does not depend on the graph.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from types import MappingProxyType

from freezestudio.core.model.adapters import Adapter, find_adapters
from freezestudio.core.model.changes import ChangeKind, DocumentChange, Snapshot
from freezestudio.core.model.fine_tuning import FineTuning
from freezestudio.core.model.gradient_view import PARTIAL, GradientView, aggregate  # noqa: F401
from freezestudio.core.model.keras_flags import write_keras_flags
from freezestudio.core.model.source import SourceFormat
from freezestudio.core.model.tree import LayerNode, ParamCounts, WeightNode, rebuild_weights

PointWriter = Callable[["Document", Iterable[str]], None]


class Document:
    """A model opened for editing.

    Args:
        root: the tree of the model.
        model: the underlying model object (a Keras model without stop-gradient layers,
            or the app's SavedModel wrapper); its `trainable_weights` give the initial
            state.
        source_path: the file it was opened from.
        source_format: the `SourceFormat` (or its value) it was read in.
        flag_writer: writes the state into the model objects; defaults to Keras semantics.
        point_writer: `(document, addresses)` makes those the stop-gradient points (it
            rebuilds the graph and calls `replace_graph`); None where the model has no
            layer graph. Injected so this module does not depend on the graph edit.
        compile_config: the training configuration stored with the model, if any.
        notes: things the user should know about how the model was opened.
    """

    def __init__(self, root: LayerNode, model, source_path: Path, source_format: str,
                 flag_writer: Callable[[Document], None] | None = None,
                 point_writer: PointWriter | None = None,
                 compile_config: dict | None = None, notes: Iterable[str] = ()):
        self.root = root
        self._model = model
        self._source_path = Path(source_path)
        self._source_format = SourceFormat(source_format)
        self._flag_writer = flag_writer or write_keras_flags
        self._point_writer = point_writer
        self._listeners: list[Callable[[DocumentChange], None]] = []
        self._needs_recompile, self._modified = True, False
        self._compile_config = compile_config
        self._compile_origin: str | None = None
        self._notes = list(notes)
        self._derived: dict = {}
        self._freeze_edits = 0  # a prepared GradientView is for one freeze state
        self._stop_points: list[str] = []
        self._fine_tuning = FineTuning()
        # The graph without stop-gradient points: container path -> its Keras object.
        self._base_layers = MappingProxyType(
            {n.path: n.layer for n in root.walk() if n.is_container})
        self._layers = {node.path: node for node in root.walk()}
        self._weights = {w.id: w for node in root.walk() for w in node.weights}
        self.weights = list(self._weights.values())
        trained_now = {id(v) for v in model.trainable_weights}
        self._trainable = {id(w.variable): id(w.variable) in trained_now for w in self.weights}
        # Layers with nothing to train (Dropout, BatchNorm without gamma/beta) keep their own
        # flag: it still matters to Keras (e.g. BatchNorm's inference mode).
        self._flags = {node.path: bool(getattr(node.layer, "trainable", True))
                       for node in root.walk()
                       if not any(w.freezable for w in node.all_weights())}
        self._gradient = self._new_gradient_view()

    # --- read-only state --------------------------------------------------------------
    @property
    def model(self):
        """The model to train and save: the base graph with the stop-gradient layers."""
        return self._model

    source_path = property(lambda self: self._source_path)
    source_format = property(lambda self: self._source_format)

    @property
    def needs_recompile(self) -> bool:
        """Whether an edit happened since the model was last compiled for training."""
        return self._needs_recompile

    @property
    def modified(self) -> bool:
        """Whether the document differs from its file."""
        return self._modified

    @property
    def compile_config(self) -> dict | None:
        """The compile configuration (optimizer, loss, metrics) saves write, serialised
        as Keras stores it (`model.get_compile_config()`); None if there is none."""
        return self._compile_config

    @property
    def compile_config_origin(self) -> str | None:
        """Where `compile_config` comes from, for the user: None while it is the one
        stored in the file the model was opened from."""
        return self._compile_origin

    @property
    def notes(self) -> list[str]:
        """Things the user should know about how the model was opened (a copy)."""
        return list(self._notes)

    @property
    def stop_points(self) -> list[str]:
        """The stop-gradient point addresses, in graph order (a copy)."""
        return list(self._stop_points)

    @property
    def base_layers(self) -> Mapping:
        """Container path -> its Keras object in the graph without stop-gradient layers."""
        return self._base_layers

    @property
    def has_layer_graph(self) -> bool:
        """False for generic SavedModels (variables by scope, nothing to analyse)."""
        return self._source_format != SourceFormat.SAVEDMODEL

    # --- lookup -------------------------------------------------------------------
    def layer(self, path: str) -> LayerNode:
        return self._layers[path]

    def weight(self, weight_id: str) -> WeightNode:
        return self._weights[weight_id]

    def find(self, address: str) -> LayerNode | WeightNode:
        """The node for a layer path or weight id. Raises KeyError."""
        if address in self._weights:
            return self._weights[address]
        return self._layers[address]

    layer_paths = property(lambda self: list(self._layers))
    weight_ids = property(lambda self: list(self._weights))

    # --- freeze state -------------------------------------------------------------------
    def is_weight_trainable(self, weight: WeightNode) -> bool:
        return weight.freezable and self._trainable[id(weight.variable)]

    def trainable_state(self, node: LayerNode | WeightNode) -> bool | str:
        """True, False or PARTIAL ("partial") for a weight, layer or container."""
        if isinstance(node, WeightNode):
            return self.is_weight_trainable(node)
        return self._memo("trainable", node, lambda: self._layer_trainable_state(node))

    def _layer_trainable_state(self, node: LayerNode) -> bool | str:
        states = {self.is_weight_trainable(w) for w in node.all_weights() if w.freezable}
        return aggregate(states) if states else self._flags.get(node.path, True)

    def set_trainable(self, nodes: Iterable[LayerNode | WeightNode], value: bool) -> None:
        """Freezes (value=False) or unfreezes the given weights, layers and containers."""
        value = bool(value)
        nodes = tuple(nodes)
        for node in nodes:
            if isinstance(node, WeightNode):
                if node.freezable:
                    self._trainable[id(node.variable)] = value
                continue
            for sub in node.walk():
                if sub.path in self._flags:
                    self._flags[sub.path] = value
            for weight in node.all_weights():
                if weight.freezable:
                    self._trainable[id(weight.variable)] = value
        self._changed(DocumentChange(ChangeKind.TRAINABLE, nodes))

    def trainable_weights(self) -> list[WeightNode]:
        return [w for w in self.weights if self.is_weight_trainable(w)]

    def layer_flag(self, node: LayerNode) -> bool:
        """The Keras `trainable` flag this layer gets: True iff anything inside trains."""
        return self.trainable_state(node) is not False

    def counts(self, node: LayerNode | WeightNode | None = None) -> ParamCounts:
        """Parameter counts of a node (default: the whole model), as Keras counts them."""
        node = self.root if node is None else node
        return self._memo("counts", node, lambda: self._counts(node))

    def _counts(self, node: LayerNode | WeightNode) -> ParamCounts:
        weights = [node] if isinstance(node, WeightNode) else list(node.all_weights())
        return ParamCounts(
            params=sum(w.size for w in weights),
            trainable=sum(w.size for w in weights if self.is_weight_trainable(w)),
        )

    # --- LoRA adapters -------------------------------------------------------------------
    def adapters(self) -> list[Adapter]:
        """The live LoRA adapters, in tree order (their base kernels are frozen rows)."""
        return self._memo("adapters", self.root, lambda: find_adapters(self.root))

    def adapters_changed(self, nodes: Iterable[LayerNode]) -> None:
        """Adapters were added to or removed from these layers' Keras objects (by
        `core/edits/lora.py`): their rows are read again. A new adapter trains, a kept
        variable keeps its state, a kernel freed of its adapter trains iff its layer did."""
        nodes = tuple(nodes)
        for node in nodes:
            others = {id(w.variable) for w in self.weights if w.layer is not node}
            before = {id(w.variable): w for w in node.weights}
            state = self.trainable_state(node)
            node.weights = rebuild_weights(node, others)
            for weight in node.weights:
                known = before.get(id(weight.variable))
                if known is None or (weight.freezable and not known.freezable):
                    self._trainable[id(weight.variable)] = (
                        known is None or state is not False)
        self._weights = {w.id: w for node in self.root.walk() for w in node.weights}
        self.weights = list(self._weights.values())
        self._changed(DocumentChange(ChangeKind.ADAPTERS, nodes))

    # --- fine-tuning strategy -----------------------------------------------------------
    fine_tuning = property(lambda self: self._fine_tuning, doc="The learning-rate "
                           "multipliers and unfreezing schedule (core/model/fine_tuning).")

    def set_fine_tuning(self, value: FineTuning) -> None:
        """Replaces the strategy (the caller checked its rules against the model)."""
        self._fine_tuning = value
        self._changed(DocumentChange(ChangeKind.FINE_TUNING))

    def detached_copy(self) -> Document:
        """The edit state over the same tree and model, without listeners (the engine's
        schedule edits it; that writes the shared Keras flags: `write_flags` after)."""
        copy = Document(self.root, self._model, self._source_path, self._source_format,
                        self._flag_writer, None, self._compile_config)
        copy._trainable, copy._flags = dict(self._trainable), dict(self._flags)
        copy._gradient = self._gradient.for_freeze_state(copy.is_weight_trainable, 0)
        copy._stop_points, copy._fine_tuning = list(self._stop_points), self._fine_tuning
        return copy

    # --- gradient flow (core/model/gradient_view.py) -----------------------------------
    def flow_state(self, node: LayerNode):
        """LIVE if some call of the layer gets gradient from an output, else the set of
        stop-gradient names that cut it off (empty: no differentiable path)."""
        return self._gradient.flow_state(node)

    def receives_gradient(self, node: LayerNode | WeightNode) -> bool | str:
        """Per weight: trainable and its layer reached by gradient. Per layer: aggregated
        over its weights (True, False or PARTIAL)."""
        return self._gradient.receives_gradient(node)

    def receiving_params(self, node: LayerNode | None = None) -> int:
        """Parameters at or below `node` (default: all) that receive gradient."""
        return self._gradient.receiving_params(self.root if node is None else node)

    def invalidate_graph(self) -> None:
        """Forget the gradient-flow analysis (and what derives from it): the next question
        runs it again (benchmarks time it this way)."""
        self._gradient = self._new_gradient_view()
        self._derived.clear()

    def _new_gradient_view(self) -> GradientView:  # generic SavedModels: all LIVE
        return GradientView(self._model, self.is_weight_trainable,
                            generation=self._freeze_edits, has_graph=self.has_layer_graph)

    def _memo(self, kind: str, node, compute):
        key = (kind, id(node))
        try:
            return self._derived[key]
        except KeyError:
            value = self._derived[key] = compute()
            return value

    # --- stop-gradient points -------------------------------------------------------
    def stop_gradient_after(self, node: LayerNode) -> list[str]:
        """The stop-gradient points set on this layer's outputs (`PATH` or `PATH[k]`)."""
        return [p for p in self._stop_points if p.partition("[")[0] == node.path]

    def set_stop_points(self, addresses: Iterable[str]) -> None:
        """Makes `addresses` the points, through the injected point writer.

        Raises:
            ValueError: the model has no layer graph (no point writer) and points differ.
        """
        addresses = list(addresses)
        if self._point_writer is None:
            if addresses != self._stop_points:
                raise ValueError("this model has no layer graph: no stop-gradient points")
            return
        self._point_writer(self, addresses)

    def prepare_gradient(self, model, containers: Mapping) -> GradientView:
        """What receives gradient in a graph not installed yet, under the current freeze
        state (for `replace_graph`), computed. May run on another thread while no edit
        runs (a rebuild's): it reads the tree, the graph and a copy of the freeze state; an
        edit meanwhile makes the view stale (`replace_graph` keeps only its analysis)."""
        generation, trainable = self._freeze_edits, dict(self._trainable)
        view = GradientView(model, lambda w: w.freezable and trainable[id(w.variable)],
                            containers, generation, has_graph=self.has_layer_graph)
        return view.compute_containers(self.root)

    def replace_graph(self, model, points: Iterable[str], containers: Mapping,
                      gradient: GradientView | None = None) -> None:
        """Installs a rebuilt graph: the point writer's only way in.

        Args:
            model: the new top model (same layer objects, with stop-gradient layers).
            points: the point addresses it holds, in graph order.
            containers: container path -> its Keras object in the new graph, for every
                container of the tree.
            gradient: `prepare_gradient(model, containers)`, if made: taken as it is if
                no freeze edit happened since, else only its analysis is.
        """
        for node in self.root.walk():
            if node.is_container:
                node.layer = containers[node.path]
        self._model = model
        self._stop_points = list(points)
        if gradient is None:
            gradient = self._new_gradient_view()
        elif gradient.generation != self._freeze_edits:
            gradient = gradient.for_freeze_state(self.is_weight_trainable, self._freeze_edits)
        self._gradient = gradient  # the freeze state's derived state stays: same weights
        self._edited(DocumentChange(ChangeKind.POINTS))

    # --- file and training state ------------------------------------------------------
    def add_note(self, note: str) -> None:
        """Records something the user should know about how the model was opened."""
        self._notes.append(note)

    def mark_saved(self, path, source_format) -> None:
        """The document was saved as `path` in that format: it is its file now."""
        self._source_path = Path(path)
        self._source_format = SourceFormat(source_format)
        self._modified = False

    def mark_unmodified(self) -> None:
        """The document equals its file (after opening it and re-applying stored state)."""
        self._modified = False

    def set_compile_config(self, config: dict | None, origin: str) -> None:
        """Replaces the compile configuration saves write (e.g. with what a training
        run trained with). Does not notify: it may be called from a worker thread.

        Args:
            config: serialised as `model.get_compile_config()` returns it, or None.
            origin: where it comes from, for the user ("FreezeStudio's training run").
        """
        self._compile_config = dict(config) if config is not None else None
        self._compile_origin = origin

    def mark_compiled(self) -> None:
        """The training engine compiled the model for the current edit state."""
        self._needs_recompile = False

    def weights_changed(self, nodes: Iterable[WeightNode] = (), notify: bool = True) -> None:
        """Weight values changed (a run, or its undo); `notify=False` from a worker
        thread, whose listeners would run in the wrong thread."""
        self._modified = True
        if notify:
            self._notify(DocumentChange(ChangeKind.WEIGHTS, tuple(nodes)))

    # --- undo support and change notification --------------------------------------
    def snapshot(self) -> Snapshot:
        return Snapshot(
            weights=tuple(self._trainable[id(w.variable)] for w in self.weights),
            flags=tuple(sorted(self._flags.items())),
            stop_points=tuple(self._stop_points),
            fine_tuning=self._fine_tuning,
        )

    def restore(self, snapshot: Snapshot) -> None:
        for weight, value in zip(self.weights, snapshot.weights, strict=True):
            self._trainable[id(weight.variable)] = value
        self._flags = dict(snapshot.flags)
        self._fine_tuning = snapshot.fine_tuning
        self._forget_freeze_state()
        if list(snapshot.stop_points) != self._stop_points:
            self.set_stop_points(snapshot.stop_points)  # writes the flags, notifies POINTS
            self._notify(DocumentChange(ChangeKind.TRAINABLE))
        else:
            self._edited(DocumentChange(ChangeKind.TRAINABLE))

    def add_listener(self, callback: Callable[[DocumentChange], None]) -> None:
        """Calls `callback(change)` after every edit (the GUI refreshes its views from it)."""
        self._listeners.append(callback)

    def remove_listener(self, callback: Callable[[DocumentChange], None]) -> None:
        if callback in self._listeners:
            self._listeners.remove(callback)

    def _changed(self, change: DocumentChange) -> None:
        self._forget_freeze_state()
        self._edited(change)

    def _forget_freeze_state(self) -> None:
        """Drops what derives from the freeze state (a graph's analysis is kept)."""
        self._freeze_edits += 1
        self._derived.clear()
        self._gradient = self._gradient.for_freeze_state(self.is_weight_trainable,
                                                         self._freeze_edits)

    def _edited(self, change: DocumentChange) -> None:
        self.write_flags()
        self._needs_recompile = True
        self._modified = True
        self._notify(change)

    def _notify(self, change: DocumentChange) -> None:
        for callback in list(self._listeners):
            callback(change)

    def write_flags(self) -> None:
        """Writes the edit state into the model's objects."""
        self._flag_writer(self)

