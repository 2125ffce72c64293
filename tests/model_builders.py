"""Small real Keras models shared by the core and CLI tests.

Every builder returns a fresh, built Keras model; nothing here mocks TensorFlow.
"""

from __future__ import annotations

import keras
import numpy as np


@keras.saving.register_keras_serializable(package="tests")
class ScaledDense(keras.layers.Layer):
    """A custom layer holding a sub-layer and a weight created with `trainable=False`."""

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.inner = keras.layers.Dense(units, name="inner_dense")

    def build(self, input_shape):
        self.inner.build(input_shape)
        self.scale = self.add_weight(name="scale", shape=(self.units,), initializer="ones",
                                     trainable=False)
        self.offset = self.add_weight(name="offset", shape=(self.units,), initializer="zeros")

    def call(self, inputs):
        return self.inner(inputs) * self.scale + self.offset

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.units)

    def get_config(self):
        return {**super().get_config(), "units": self.units}


@keras.saving.register_keras_serializable(package="tests")
class UnnamedWeights(keras.layers.Layer):
    """Creates its weights without names: Keras auto-names them with a global counter."""

    def build(self, input_shape):
        self.a = self.add_weight(shape=(input_shape[-1],), initializer="ones")
        self.b = self.add_weight(shape=(input_shape[-1],), initializer="zeros")

    def call(self, inputs):
        return inputs * self.a + self.b


@keras.saving.register_keras_serializable(package="tests")
class SameNameWeights(keras.layers.Layer):
    """Two weights with the same name in one layer (Keras allows it)."""

    def build(self, input_shape):
        self.first = self.add_weight(name="w", shape=(input_shape[-1],), initializer="ones")
        self.second = self.add_weight(name="w", shape=(input_shape[-1], 2), initializer="ones")

    def call(self, inputs):
        return keras.ops.matmul(inputs * self.first, self.second)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], 2)


@keras.saving.register_keras_serializable(package="tests")
class TwoBranches(keras.layers.Layer):
    """Two Dense sub-layers: both own a `kernel` and a `bias`."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.left = keras.layers.Dense(2, name="left")
        self.right = keras.layers.Dense(2, name="right")

    def build(self, input_shape):
        self.left.build(input_shape)
        self.right.build(input_shape)

    def call(self, inputs):
        return self.left(inputs) + self.right(inputs)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], 2)


def mobilenet_v2(size=32, alpha=0.35):
    return keras.applications.MobileNetV2(input_shape=(size, size, 3), alpha=alpha,
                                          weights=None, classes=10)


def sequential_with_backbone():
    """Sequential[functional backbone (with BatchNorm), Dropout, Dense]."""
    inputs = keras.Input((8, 8, 3), name="image")
    x = keras.layers.Conv2D(4, 3, name="conv")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.ReLU(name="relu")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    backbone = keras.Model(inputs, x, name="backbone")
    return keras.Sequential([
        keras.Input((8, 8, 3)),
        backbone,
        keras.layers.Dropout(0.1, name="drop"),
        keras.layers.Dense(3, name="head"),
    ], name="classifier")


def shared_two_outputs():
    """Functional: one Dense layer called on two inputs, two outputs."""
    a = keras.Input((5,), name="a")
    b = keras.Input((5,), name="b")
    shared = keras.layers.Dense(4, name="shared")
    ha, hb = shared(a), shared(b)
    out1 = keras.layers.Dense(2, name="out1")(ha)
    merged = keras.layers.Concatenate(name="concat")([ha, hb])
    out2 = keras.layers.Dense(1, name="out2")(merged)
    return keras.Model([a, b], [out1, out2], name="shared_model")


def text_lstm():
    tokens = keras.Input((12,), dtype="int32", name="tokens")
    x = keras.layers.Embedding(50, 8, name="embedding")(tokens)
    x = keras.layers.LSTM(6, name="lstm")(x)
    out = keras.layers.Dense(2, name="dense")(x)
    return keras.Model(tokens, out, name="text")


def attention_model():
    seq = keras.Input((6, 8), name="seq")
    x = keras.layers.MultiHeadAttention(num_heads=2, key_dim=4, name="mha")(seq, seq)
    x = keras.layers.LayerNormalization(name="norm")(x)
    x = keras.layers.GlobalAveragePooling1D(name="pool")(x)
    out = keras.layers.Dense(2, name="dense")(x)
    return keras.Model(seq, out, name="attention")


def custom_layer_model():
    inputs = keras.Input((4,), name="x")
    x = ScaledDense(3, name="scaled")(inputs)
    out = keras.layers.Dense(1, name="dense")(x)
    return keras.Model(inputs, out, name="custom")


def mlp(name="mlp"):
    inputs = keras.Input((4,), name="x")
    x = keras.layers.Dense(6, name="dense")(inputs)
    x = keras.layers.Dense(5, name="dense_1")(x)
    out = keras.layers.Dense(2, name="dense_2")(x)
    return keras.Model(inputs, out, name=name)


def nested_sequential():
    """A functional model around a nested Sequential block and a head."""
    block = keras.Sequential([
        keras.Input((4,)),
        keras.layers.Dense(5, name="d1"),
        keras.layers.Dense(5, name="d2"),
    ], name="block")
    inputs = keras.Input((4,), name="x")
    out = keras.layers.Dense(2, name="head")(block(inputs))
    return keras.Model(inputs, out, name="outer")


def sample_input(model, batch=2, seed=0):
    """A random batch matching the model's inputs (ints for integer inputs)."""
    rng = np.random.default_rng(seed)
    arrays = []
    for tensor in model.inputs:
        shape = (batch, *tensor.shape[1:])
        if "int" in str(tensor.dtype):
            arrays.append(rng.integers(0, 10, size=shape).astype("int32"))
        else:
            arrays.append(rng.standard_normal(shape).astype("float32"))
    return arrays[0] if len(arrays) == 1 else arrays


def layer_params(layer):
    """Keras's own count of a layer's params and trainable params (each variable once)."""
    total = sum(int(np.prod(w.shape)) for w in layer.weights)
    trainable = sum(int(np.prod(w.shape)) for w in layer.trainable_weights)
    return total, trainable


def keras_layer_paths(model, prefix=""):
    """{path: layer} for every layer below `model`, nested models recursed (layer paths)."""
    found = {}
    for layer in model.layers:
        path = f"{prefix}/{layer.name}" if prefix else layer.name
        found[path] = layer
        if isinstance(layer, keras.Model):
            found.update(keras_layer_paths(layer, path))
    return found


def weight_indices(model, variables):
    """Positions in `model.weights` of the given variables (compares identities)."""
    position = {id(v): i for i, v in enumerate(model.weights)}
    return sorted(position[id(v)] for v in variables)


def trainable_indices(model):
    """Positions in `model.weights` of what Keras itself trains."""
    return weight_indices(model, model.trainable_weights)


def document_trainable_indices(document):
    return weight_indices(document.model, [w.variable for w in document.trainable_weights()])


def size(variables):
    return sum(int(np.prod(v.shape)) for v in variables)


GIZMO_MODULE = '''
import keras


@keras.saving.register_keras_serializable(package="fs_missing")
class Gizmo(keras.layers.Layer):
    def __init__(self, units=2, **kwargs):
        super().__init__(**kwargs)
        self.units = units

    def build(self, input_shape):
        self.w = self.add_weight(name="w", shape=(input_shape[-1], self.units))

    def call(self, x):
        return keras.ops.matmul(x, self.w)

    def get_config(self):
        return {**super().get_config(), "units": self.units}
'''


def make_missing_class_model(folder):
    """A .keras and an .h5 using class `Gizmo` defined in `gizmo_layers.py`, which is then
    unregistered from this process, as if it had been written on another machine.

    Returns:
        (keras_path, h5_path, module_path).
    """
    import importlib.util
    from pathlib import Path

    folder = Path(folder)
    module_path = folder / "gizmo_layers.py"
    module_path.write_text(GIZMO_MODULE)
    spec = importlib.util.spec_from_file_location("fs_tests_gizmo_builder", module_path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    inputs = keras.Input((3,), name="x")
    model = keras.Model(inputs, module.Gizmo(2, name="giz")(inputs), name="gizmo_model")
    model.save(folder / "gizmo.keras")
    model.save(folder / "gizmo.h5")
    forget_gizmo()
    return folder / "gizmo.keras", folder / "gizmo.h5", module_path


def forget_gizmo():
    keras.saving.get_custom_objects().pop("fs_missing>Gizmo", None)


def make_bad_inputs(folder):
    """Files FreezeStudio must refuse with a one-line user error.

    Returns:
        {case: path}.
    """
    import shutil
    import zipfile
    from pathlib import Path

    folder = Path(folder)
    rng = np.random.default_rng(1234)
    good = mlp()
    good.save(folder / "good.keras")
    good.save(folder / "good.h5")
    good.save_weights(folder / "good.weights.h5")
    cases = {"missing": folder / "missing.keras"}
    cases["empty"] = folder / "empty.keras"
    cases["empty"].write_bytes(b"")
    cases["random_bytes"] = folder / "random.keras"
    cases["random_bytes"].write_bytes(rng.bytes(4096))
    cases["random_bytes_h5"] = folder / "random.h5"
    cases["random_bytes_h5"].write_bytes(rng.bytes(4096))
    data = (folder / "good.keras").read_bytes()
    cases["truncated_keras"] = folder / "truncated.keras"
    cases["truncated_keras"].write_bytes(data[: len(data) // 2])
    data = (folder / "good.h5").read_bytes()
    cases["truncated_h5"] = folder / "truncated.h5"
    cases["truncated_h5"].write_bytes(data[: len(data) // 2])
    cases["h5_named_keras"] = folder / "really_h5.keras"
    shutil.copy(folder / "good.h5", cases["h5_named_keras"])
    cases["dir_without_saved_model"] = folder / "not_a_savedmodel"
    cases["dir_without_saved_model"].mkdir()
    (cases["dir_without_saved_model"] / "variables.txt").write_text("nothing here")
    cases["weights_only_h5"] = folder / "weights_only.h5"
    shutil.copy(folder / "good.weights.h5", cases["weights_only_h5"])
    cases["zip_without_config"] = folder / "other.keras"
    with zipfile.ZipFile(cases["zip_without_config"], "w") as archive:
        archive.writestr("readme.txt", "not a model")
    cases["nonsense_config"] = folder / "nonsense.keras"
    with zipfile.ZipFile(cases["nonsense_config"], "w") as archive:
        archive.writestr("config.json", '{"class_name": "NoSuchModel", "config": {}}')
        archive.writestr("metadata.json", '{"keras_version": "3.15.1"}')
    cases["corrupt_saved_model_pb"] = folder / "corrupt_savedmodel"
    cases["corrupt_saved_model_pb"].mkdir()
    (cases["corrupt_saved_model_pb"] / "saved_model.pb").write_bytes(rng.bytes(300))
    return cases


def sentinel_lambda(sentinel):
    """A function that creates the file `sentinel` whenever it runs; the path is a constant
    of its own code, so it survives serialization as bytecode."""
    return eval(f"lambda x: (open({str(sentinel)!r}, 'w').close(), x)[1]")  # noqa: S307


LAMBDA_FORMATS = ("keras", "keras_nested", "keras3_h5", "tf_keras_savedmodel", "tf_keras_h5")


def make_lambda_models(folder):
    """One model file per entry of LAMBDA_FORMATS, each with a Lambda layer that creates
    its own sentinel file when run.

    Returns:
        {format: (model path, sentinel path)}; no sentinel exists on return.
    """
    from pathlib import Path

    import tf_keras

    folder = Path(folder)
    made = {}

    def sentinel(name):
        return folder / f"{name}.sentinel"

    inputs = keras.Input((3,), name="x")
    x = keras.layers.Dense(2, name="dense")(inputs)
    x = keras.layers.Lambda(sentinel_lambda(sentinel("keras")), name="code")(x)
    keras.Model(inputs, x, name="lam").save(folder / "lam.keras")
    made["keras"] = (folder / "lam.keras", sentinel("keras"))

    inner_in = keras.Input((3,))
    inner_out = keras.layers.Lambda(sentinel_lambda(sentinel("keras_nested")),
                                    name="code")(inner_in)
    inner = keras.Model(inner_in, inner_out, name="inner")
    inputs = keras.Input((3,), name="x")
    outputs = keras.layers.Dense(2, name="dense")(inner(inputs))
    keras.Model(inputs, outputs, name="lam_nested").save(folder / "lam_nested.keras")
    made["keras_nested"] = (folder / "lam_nested.keras", sentinel("keras_nested"))

    inputs = keras.Input((3,), name="x")
    x = keras.layers.Dense(2, name="dense")(inputs)
    x = keras.layers.Lambda(sentinel_lambda(sentinel("keras3_h5")), name="code")(x)
    keras.Model(inputs, x, name="lam").save(folder / "lam_k3.h5")
    made["keras3_h5"] = (folder / "lam_k3.h5", sentinel("keras3_h5"))

    for fmt, target in (("tf_keras_savedmodel", folder / "lam_savedmodel"),
                        ("tf_keras_h5", folder / "lam_tfk.h5")):
        legacy = tf_keras.Sequential([
            tf_keras.layers.Dense(2, name="dense", input_shape=(3,)),
            tf_keras.layers.Lambda(sentinel_lambda(sentinel(fmt)), name="code"),
        ], name="lam")
        legacy.save(target)
        made[fmt] = (target, sentinel(fmt))

    for _, flag in made.values():
        flag.unlink(missing_ok=True)
    return made
