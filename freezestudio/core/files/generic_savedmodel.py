"""Generic SavedModels (no Keras metadata): variables grouped by name scope.

`tf.saved_model.load` gives an object graph with restored functions and variables but no
layers. The wrapper here shows the variables as a tree of scopes (`dense/kernel:0` lives
in scope `dense`), lets each be frozen, and saves the object back with the same
signatures. A variable's trainable flag is stored in the SavedModel itself (TensorFlow
keeps it per variable) as well as in FreezeStudio's state file.
"""

from __future__ import annotations

from pathlib import Path

from freezestudio.core.errors import ModelFileError, first_line
from freezestudio.core.files import formats
from freezestudio.core.model.document import Document
from freezestudio.core.model.tree import LayerNode, WeightNode, child_path

SCOPE_CLASS = "Scope"


class GenericSavedModel:
    """A loaded SavedModel with the surface the document needs.

    Attributes:
        loaded: the object `tf.saved_model.load` returned.
        variables: its variables, each once, in a stable order.
    """

    def __init__(self, loaded):
        import tensorflow as tf

        self.loaded = loaded
        # The variables the signatures compute with first, then the object graph's others,
        # except second copies of those: Keras's `model.export` tracks each weight twice,
        # and walking the object graph alone counted every variable twice and trained
        # copies no signature reads.
        read = [v for signature in loaded.signatures.values() for v in signature.variables]
        names = {v.name for v in read}
        others = [obj for obj in tf.train.TrackableView(loaded).descendants()
                  if isinstance(obj, tf.Variable) and obj.name not in names]
        seen: set[int] = set()
        self.variables = []
        for variable in read + others:
            if id(variable) not in seen:
                seen.add(id(variable))
                self.variables.append(variable)
        declared = getattr(loaded, "trainable_variables", None)
        if isinstance(declared, list | tuple):
            # a Keras export lists its trainable variables; the variables' own flags say
            # True for the weights of frozen layers (Keras freezes layers, not variables)
            trainable = {id(v) for v in declared}
            for variable in self.variables:
                variable._trainable = id(variable) in trainable
        self.name = "saved_model"

    @property
    def trainable_weights(self):
        return [v for v in self.variables if v.trainable and v.dtype.is_floating]

    @property
    def signatures(self):
        return self.loaded.signatures

    def save(self, path) -> None:
        import tensorflow as tf

        if isinstance(getattr(self.loaded, "trainable_variables", None), list | tuple):
            # keep the declared lists true to the edit, for whoever reads them
            self.loaded.trainable_variables = [v for v in self.variables if v.trainable]
            self.loaded.non_trainable_variables = [v for v in self.variables
                                                   if not v.trainable]
        tf.saved_model.save(self.loaded, str(path), signatures=dict(self.signatures))


def variable_name(variable) -> str:
    """The variable's name without the `:0` output suffix."""
    name = variable.name
    return name.rsplit(":", 1)[0] if ":" in name else name


def build_scope_tree(model: GenericSavedModel) -> LayerNode:
    """Scopes as containers, variables as weights of the scope that names them."""
    root = LayerNode(name=model.name, path="", class_name="SavedModel", is_container=True)
    scopes = {"": root}

    def scope(path: str) -> LayerNode:
        if path not in scopes:
            parent_path, _, name = path.rpartition("/")
            parent = scope(parent_path)
            node = LayerNode(name=name, path=child_path(parent.path, name),
                             class_name=SCOPE_CLASS, parent=parent, is_container=True)
            parent.children.append(node)
            scopes[path] = node
        return scopes[path]

    for variable in model.variables:
        scope_path, _, leaf = variable_name(variable).rpartition("/")
        node = scope(scope_path)
        key, suffix = leaf, 1
        while any(w.key == key for w in node.weights):
            key, suffix = f"{leaf}_{suffix}", suffix + 1
        node.weights.append(WeightNode(key, variable, node, variable.dtype.is_floating))
    return root


def write_variable_flags(document: Document) -> None:
    """Sets each variable's trainable flag (tf.Variable keeps it in `_trainable`)."""
    for weight in document.weights:
        if weight.freezable:
            weight.variable._trainable = document.is_weight_trainable(weight)


def open_generic_savedmodel(path: Path) -> Document:
    """Loads a SavedModel directory without Keras metadata as a document."""
    import tensorflow as tf

    try:
        loaded = tf.saved_model.load(str(path))
    except Exception as exc:  # noqa: BLE001 - corrupt protobufs raise many types
        raise ModelFileError(f"{path}: cannot be loaded as a SavedModel: {first_line(exc)}") \
            from None
    model = GenericSavedModel(loaded)
    return Document(build_scope_tree(model), model, path, formats.SAVEDMODEL,
                    flag_writer=write_variable_flags)  # no layer graph: no point writer
