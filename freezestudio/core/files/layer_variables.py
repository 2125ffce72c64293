"""The variables a built Keras 3 layer holds, told from its class and config alone.

A `.keras` weights file stores a layer's variables as `vars/0`, `vars/1`, ... (its
trainable then its non-trainable variables, in creation order: `Layer.save_own_variables`)
without their names. The names, and whether each was created trainable, follow from the
layer's class and config; this table knows them for Keras's built-in layers. A layer it
does not know, or a config it cannot be sure of (LoRA, quantization, renorm), makes the
config reader give way to a full load (`UnknownLayer`).
"""

from __future__ import annotations

WEIGHTLESS = frozenset({
    "InputLayer", "Activation", "ReLU", "LeakyReLU", "ELU", "Softmax", "Add", "Subtract",
    "Multiply", "Average", "Maximum", "Minimum", "Concatenate", "Dot", "Dropout",
    "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D", "GaussianNoise",
    "GaussianDropout", "AlphaDropout", "Flatten", "Reshape", "Permute", "RepeatVector",
    "ZeroPadding1D", "ZeroPadding2D", "ZeroPadding3D", "Cropping1D", "Cropping2D",
    "Cropping3D", "UpSampling1D", "UpSampling2D", "UpSampling3D", "MaxPooling1D",
    "MaxPooling2D", "MaxPooling3D", "AveragePooling1D", "AveragePooling2D",
    "AveragePooling3D", "GlobalAveragePooling1D", "GlobalAveragePooling2D",
    "GlobalAveragePooling3D", "GlobalMaxPooling1D", "GlobalMaxPooling2D",
    "GlobalMaxPooling3D", "Rescaling", "Identity", "ActivityRegularization",
    "StopGradient",
})
"""Built-in layers that hold no variables (FreezeStudio's own StopGradient included)."""

_KERNEL_BIAS = frozenset({
    "Dense", "Conv1D", "Conv2D", "Conv3D", "Conv1DTranspose", "Conv2DTranspose",
    "Conv3DTranspose", "DepthwiseConv1D", "DepthwiseConv2D",
})
_SEPARABLE = frozenset({"SeparableConv1D", "SeparableConv2D"})
_UNSURE_KEYS = ("lora_rank", "quantization_config", "renorm")


class UnknownLayer(Exception):
    """The config alone does not tell this layer's variables."""


def layer_variables(class_name: str, config: dict, stored: int) -> list[tuple[str, bool]]:
    """(name, created trainable) of each variable, in the order the weights file stores
    them (`vars/0`, ...).

    Args:
        class_name: the layer's Keras class name.
        config: its config (the `config` of its serialised entry).
        stored: how many variables the weights file holds for it.

    Raises:
        UnknownLayer: the class is not in the table, the config has a setting the table
            does not cover, or the file holds another number of variables.
    """
    if any(config.get(key) for key in _UNSURE_KEYS):
        raise UnknownLayer(f"{class_name} '{config.get('name')}' uses {_UNSURE_KEYS}")
    if class_name in WEIGHTLESS:
        names = []
    elif class_name in _KERNEL_BIAS:
        names = [("kernel", True)] + ([("bias", True)] if config.get("use_bias", True) else [])
    elif class_name in _SEPARABLE:
        names = [("depthwise_kernel", True), ("pointwise_kernel", True)]
        names += [("bias", True)] if config.get("use_bias", True) else []
    elif class_name == "BatchNormalization":
        names = [("gamma", True)] if config.get("scale", True) else []
        names += [("beta", True)] if config.get("center", True) else []
        names += [("moving_mean", False), ("moving_variance", False)]
    elif class_name == "LayerNormalization":
        names = [("gamma", True)] if config.get("scale", True) else []
        names += [("beta", True)] if config.get("center", True) else []
    elif class_name == "Embedding":
        names = [("embeddings", True)]
    elif class_name == "PReLU":
        names = [("alpha", True)]
    elif class_name == "Normalization" and stored == 0:
        names = []
    elif class_name == "Normalization":
        names = [("mean", False), ("variance", False), ("count", False)]
    else:
        raise UnknownLayer(f"{class_name} '{config.get('name')}' is not a known layer")
    if len(names) != stored:
        raise UnknownLayer(f"{class_name} '{config.get('name')}': the file holds {stored} "
                           f"variables, the config tells {len(names)}")
    return names
