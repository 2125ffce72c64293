"""Writes a document's freeze state into the Keras objects (the default flag writer)."""

from __future__ import annotations


def write_keras_flags(document) -> None:
    """Sets `trainable` on every Keras layer and variable so Keras agrees with the tree.

    Walks the tree parents first and sets each flag that differs, never relying on Keras's
    cascade (which a nested layer's own later assignment overrides, and which reloaded
    containers do not carry): a child is compared after its parent's cascade. Variables'
    own flags come last, those never trained included: a layer's cascade also sets its
    variables, and would unfreeze a base kernel under a LoRA adapter.
    """
    for node in document.root.walk():
        flag = document.layer_flag(node)
        if node.layer is not None and node.layer.trainable != flag:
            node.layer.trainable = flag  # cascades; children are compared after it
    for weight in document.weights:
        if weight.variable.trainable != document.is_weight_trainable(weight):
            weight.variable.trainable = document.is_weight_trainable(weight)
