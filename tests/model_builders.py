"""The test models: every model a test builds by name lives here (core, CLI and GUI tests).

Every builder returns a fresh, built model (Keras 3 unless its name says tf_keras, or a
plain `tf.Module` for generic SavedModels); nothing here mocks TensorFlow. The `make_*`
functions write model files and return their paths.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf


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


def tiny_bert_classifier(seed=0):
    """A keras_hub BERT backbone built from config (tiny, random weights) under a Dense
    head; keras_hub is a test-only dependency: callers skip where it is absent."""
    import keras_hub

    keras.utils.set_random_seed(seed)
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=60, num_layers=2, num_heads=2, hidden_dim=16, intermediate_dim=32,
        max_sequence_length=12, name="bert")
    inputs = {name: keras.Input((12,), dtype="int32", name=name)
              for name in ("token_ids", "segment_ids", "padding_mask")}
    pooled = backbone(inputs)["pooled_output"]
    out = keras.layers.Dense(3, name="head")(pooled)
    return keras.Model(inputs, out, name="bert_classifier")


def bert_inputs(batch=4, seed=0):
    rng = np.random.default_rng(seed)
    return {"token_ids": rng.integers(1, 60, (batch, 12)).astype("int32"),
            "segment_ids": np.zeros((batch, 12), "int32"),
            "padding_mask": np.ones((batch, 12), "int32")}


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


def grouped_conv_model():
    """A Conv2D with groups=4 (Keras's TensorFlow backend runs it XLA-compiled)."""
    inputs = keras.Input((16, 16, 8), name="image")
    x = keras.layers.Conv2D(8, 3, padding="same", groups=4, name="grouped")(inputs)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    return keras.Model(inputs, keras.layers.Dense(3, name="out")(x), name="grouped_model")


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


def functional_with_backbone():
    """image -> backbone(conv, bn, relu, pool) -> head_dense -> head_dropout -> out: a
    functional backbone inside a functional model (the GUI tests' "nested" file)."""
    inputs = keras.Input((8, 8, 3), name="image")
    x = keras.layers.Conv2D(4, 3, name="conv", padding="same")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.ReLU(name="relu")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    backbone = keras.Model(inputs, x, name="backbone")
    outer_in = keras.Input((8, 8, 3), name="input")
    y = backbone(outer_in)
    y = keras.layers.Dense(5, name="head_dense")(y)
    y = keras.layers.Dropout(0.1, name="head_dropout")(y)
    out = keras.layers.Dense(2, name="out")(y)
    return keras.Model(outer_in, out, name="nested")


def shared_two_inputs_one_output():
    """A Dense layer called on two inputs (two insertion points), concatenated, one output
    (unlike `shared_two_outputs`)."""
    a = keras.Input((4,), name="a")
    b = keras.Input((4,), name="b")
    shared = keras.layers.Dense(3, name="shared")
    merged = keras.layers.Concatenate(name="concat")([shared(a), shared(b)])
    out = keras.layers.Dense(1, name="out")(merged)
    return keras.Model([a, b], out, name="shared_model")


def doubling_lambda():
    """A Lambda layer (Python code in the file) doubling the input, then a Dense."""
    inputs = keras.Input((3,), name="x")
    x = keras.layers.Lambda(lambda t: t * 2.0, name="double")(inputs)
    return keras.Model(inputs, keras.layers.Dense(1, name="d")(x), name="with_lambda")


def shared_on_one_input_with_argmax():
    """One input; a Dense layer called on it and on a Dense of it; a side branch through
    argmax (no gradient); two outputs. (Unlike `shared_two_outputs`: one input, and a
    branch TensorFlow gives no gradient.)"""
    inp = keras.Input((10,), name="features")
    shared = keras.layers.Dense(8, activation="tanh", name="shared")
    a = shared(inp)
    b = shared(keras.layers.Dense(10, name="pre")(inp))
    # +1: a zero index would give after_argmax a zero kernel gradient on this input
    argmax = keras.ops.cast(keras.ops.argmax(b, axis=-1), "float32") + 1.0  # no gradient
    side = keras.layers.Dense(2, name="after_argmax")(keras.ops.expand_dims(argmax, -1))
    out1 = keras.layers.Dense(3, name="out1")(a)
    out2 = keras.layers.Add(name="merge")([keras.layers.Dense(2, name="out2")(b), side])
    return keras.Model(inp, [out1, out2], name="shared_model")


def sequential_in_sequential_cnn():
    """A functional wrapper around a convolutional Sequential backbone (with BatchNorm) that
    itself holds a Sequential. (Unlike `nested_sequential`: two levels of Sequential.)"""
    backbone = keras.Sequential([
        keras.Input((8, 8, 3)),
        keras.layers.Conv2D(4, 3, name="conv"),
        keras.layers.BatchNormalization(name="bn"),
        keras.layers.ReLU(name="relu"),
        keras.Sequential([keras.layers.Conv2D(4, 3, name="deep_conv")], name="deeper"),
        keras.layers.GlobalAveragePooling2D(name="gap"),
    ], name="backbone")
    inp = keras.Input((8, 8, 3), name="image")
    return keras.Model(inp, keras.layers.Dense(2, name="head")(backbone(inp)), name="wrapper")


def text_lstm_hidden_classifier():
    """Embedding(100, 16) -> LSTM(8) -> Dense hidden -> Dense classifier."""
    tokens = keras.Input((12,), dtype="int32", name="tokens")
    x = keras.layers.Embedding(100, 16, name="embedding")(tokens)
    x = keras.layers.LSTM(8, name="lstm")(x)
    x = keras.layers.Dense(8, activation="relu", name="hidden")(x)
    return keras.Model(tokens, keras.layers.Dense(3, name="classifier")(x), name="text")


def text_bilstm_gru():
    """Embedding -> Bidirectional LSTM -> GRU -> logits, weights large enough that the
    outputs are O(1)."""
    tokens = keras.Input((12,), dtype="int32", name="tokens")
    x = keras.layers.Embedding(60, 8, name="embedding")(tokens)
    x = keras.layers.Bidirectional(keras.layers.LSTM(6, return_sequences=True), name="bilstm")(x)
    x = keras.layers.GRU(5, name="gru")(x)
    out = keras.layers.Dense(3, name="logits")(x)
    model = keras.Model(tokens, out, name="text")
    rng = np.random.default_rng(2)  # weights large enough that outputs are O(1)
    model.get_layer("embedding").set_weights([rng.standard_normal((60, 8))])
    model.get_layer("logits").set_weights([rng.standard_normal((5, 3)) * 3, np.zeros(3)])
    return model


def lstm_tokens(length, nested=False):
    """Embedding -> LSTM (inside a functional `block` if nested) -> Dense; `length` None:
    variable-length sequences."""
    tokens = keras.Input((length,), dtype="int32", name="tokens")
    x = keras.layers.Embedding(20, 4, name="embedding")(tokens)
    if nested:
        seq = keras.Input((length, 4))
        block = keras.Model(seq, keras.layers.LSTM(3, name="lstm")(seq), name="block")
        x = block(x)
    else:
        x = keras.layers.LSTM(3, name="lstm")(x)
    return keras.Model(tokens, keras.layers.Dense(2, name="out")(x), name="rnn")


def text_vectorization_reader(corpus):
    """Raw strings -> TextVectorization (adapted to `corpus`) -> Embedding -> pool -> Dense."""
    vectorize = keras.layers.TextVectorization(max_tokens=50, output_sequence_length=6,
                                               name="vectorize")
    vectorize.adapt(np.array(corpus))
    text = keras.Input((1,), dtype="string", name="text")
    x = keras.layers.Embedding(50, 4, name="embedding")(vectorize(text))
    x = keras.layers.GlobalAveragePooling1D(name="pool")(x)
    return keras.Model(text, keras.layers.Dense(2, name="out")(x), name="reader")


def calibrate_batchnorm(model, x):
    """Moving statistics = the statistics of one batch, so inference outputs are O(1)."""
    layers = [la for la in model._flatten_layers()
              if isinstance(la, keras.layers.BatchNormalization)]
    for layer in layers:
        layer.momentum = 0.0
    model(x, training=True)
    for layer in layers:
        layer.momentum = 0.99


def mobilenet_v2_calibrated_logits():
    """MobileNetV2 (alpha 0.35, 32x32, logits), BatchNorm statistics calibrated."""
    model = keras.applications.MobileNetV2(input_shape=(32, 32, 3), alpha=0.35, weights=None,
                                           classes=10, classifier_activation=None)
    calibrate_batchnorm(model, np.random.default_rng(1).standard_normal((16, 32, 32, 3)))
    return model


def sequential_with_backbone_calibrated():
    """`sequential_with_backbone`, BatchNorm statistics calibrated."""
    model = sequential_with_backbone()
    calibrate_batchnorm(model, np.random.default_rng(3).standard_normal((8, 8, 8, 3)))
    return model


def mobilenet_v2_transfer():
    """The plan example's shape: a MobileNetV2 backbone nested in a model with `dense_1`."""
    base = keras.applications.MobileNetV2(input_shape=(32, 32, 3), alpha=0.35, weights=None,
                                          include_top=False)
    inputs = keras.Input((32, 32, 3), name="image")
    x = keras.layers.GlobalAveragePooling2D(name="gap")(base(inputs))
    outputs = keras.layers.Dense(10, name="dense_1")(x)
    return keras.Model(inputs, outputs, name="transfer")


def separable_images(count, size=16, classes=3, seed=0):
    """Synthetic images a small CNN learns to near 100 %: class k is a bright square in
    quadrant k on noise. Returns `(x float32 in [0, 1], y int32)`."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, count).astype("int32")
    x = rng.uniform(0.0, 0.4, (count, size, size, 3)).astype("float32")
    half = size // 2
    for i, label in enumerate(y):
        top, left = (label // 2) * half, (label % 2) * half
        x[i, top + 2:top + half - 2, left + 2:left + half - 2, label % 3] += 0.6
    return x, y


def trained_small_cnn(x, y, classes=3, epochs=4):
    """A small CNN (two convolutions, a 64-unit dense layer: ~140k parameters, so its
    weights dominate any file) trained on `(x, y)`; softmax output `probs`."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input(x.shape[1:], name="image")
    h = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv1")(inputs)
    h = keras.layers.MaxPooling2D(name="pool1")(h)
    h = keras.layers.Conv2D(32, 3, padding="same", activation="relu", name="conv2")(h)
    h = keras.layers.Flatten(name="flatten")(h)
    h = keras.layers.Dense(64, activation="relu", name="hidden")(h)
    outputs = keras.layers.Dense(classes, activation="softmax", name="probs")(h)
    model = keras.Model(inputs, outputs, name="small_cnn")
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    model.fit(x, y, epochs=epochs, batch_size=32, verbose=0)
    return model


def trained_cnn_files(folder, train_count, held_out_count):
    """`trained_small_cnn` on `separable_images(train_count)`, saved as `folder/cnn.keras`,
    with `folder/data.npz` holding its data and `held_out_count` held-out rows
    (`x_val`, `y_val`, another seed). Returns `(model, model_path, data_path, x_val, y_val)`."""
    x, y = separable_images(train_count)
    x_val, y_val = separable_images(held_out_count, seed=1)
    model = trained_small_cnn(x, y)
    model.save(folder / "cnn.keras")
    np.savez(folder / "data.npz", x=x, y=y, x_val=x_val, y_val=y_val)
    return model, folder / "cnn.keras", folder / "data.npz", x_val, y_val


def keras_application(name):
    """A builder of `keras.applications.<name>` (no weights, 32x32, 5 classes)."""
    def build():
        return getattr(keras.applications, name)(weights=None, input_shape=(32, 32, 3),
                                                 classes=5)
    return build


@keras.saving.register_keras_serializable(package="oracle")
class Encoder(keras.Model):
    """A subclassed model calling a functional model it owns, then a layer of its own."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        inputs = keras.Input((6,), name="encoder_in")
        hidden = keras.layers.Dense(5, activation="tanh", name="inner_dense")(inputs)
        self.inner = keras.Model(inputs, keras.layers.Dense(4, name="inner_out")(hidden),
                                 name="inner")
        self.project = keras.layers.Dense(3, name="project")

    def call(self, x):
        return self.project(self.inner(x))


def subclassed_around_functional():
    inp = keras.Input((6,), name="features")
    encoded = Encoder(name="encoder")(inp)
    side = keras.layers.Dense(3, name="side")(inp)
    merged = keras.layers.Concatenate(name="merge")([encoded, side])
    return keras.Model(inp, keras.layers.Dense(2, name="head")(merged), name="outer")


def dict_model():
    """Dict inputs (a float and an int input) and dict outputs."""
    inputs = {"image": keras.Input((4,), name="image"),
              "count": keras.Input((1,), dtype="int32", name="count")}
    count = keras.layers.Embedding(5, 4, name="count_embedding")(inputs["count"])
    merged = keras.layers.Concatenate(name="merge")(
        [inputs["image"], keras.layers.Flatten(name="flat")(count)])
    return keras.Model(inputs, {"score": keras.layers.Dense(1, name="score_head")(merged),
                                "class": keras.layers.Dense(3, name="class_head")(merged)},
                       name="dicts")


def odd_names_model():
    """An input and a layer named with characters TensorFlow signatures do not take."""
    x = keras.Input((3,), name="x in:put")
    return keras.Model(x, keras.layers.Dense(2, name="dense.out")(x), name="odd")


def two_dense_sequential():
    return keras.Sequential([keras.Input((3,)), keras.layers.Dense(4, name="d1"),
                             keras.layers.Dense(2, name="d2")], name="seq")


def bn_block_model():
    """A two-block MLP with BatchNorm in each block (schedules, BatchNorm policy)."""
    inputs = keras.Input((4,), name="x")
    x = keras.layers.Dense(6, name="block_1_dense")(inputs)
    x = keras.layers.BatchNormalization(name="block_1_bn")(x)
    x = keras.layers.Dense(5, name="block_2_dense")(x)
    x = keras.layers.BatchNormalization(name="block_2_bn")(x)
    out = keras.layers.Dense(2, name="head")(x)
    return keras.Model(inputs, out, name="bn_blocks")


def two_in_two_out():
    """Inputs `a` (3) and `b` (2) concatenated; a softmax `cls` and a regression `reg`."""
    a = keras.Input((3,), name="a")
    b = keras.Input((2,), name="b")
    merged = keras.layers.Concatenate(name="cat")([a, b])
    cls = keras.layers.Dense(4, activation="softmax", name="cls")(merged)
    reg = keras.layers.Dense(1, name="reg")(merged)
    return keras.Model([a, b], [cls, reg], name="two")


def dict_outputs(outputs: dict):
    """Input `x` (4) and one output per `{name: layer}`, each layer called on `x`."""
    inputs = keras.Input((4,), name="x")
    return keras.Model(inputs, {name: layer(inputs) for name, layer in outputs.items()})


def gradient_norms_model():
    """Dense -> BatchNorm -> Dense, plus a side Dense from the input, added, softmax."""
    inputs = keras.Input((6,), name="x")
    a = keras.layers.Dense(8, activation="tanh", name="a")(inputs)
    b = keras.layers.BatchNormalization(name="bn")(a)
    c = keras.layers.Dense(8, activation="relu", name="c")(b)
    side = keras.layers.Dense(8, name="side")(inputs)
    merged = keras.layers.Add(name="add")([c, side])
    out = keras.layers.Dense(3, activation="softmax", name="out")(merged)
    return keras.Model(inputs, out, name="norms")


@keras.saving.register_keras_serializable(package="tests")
class HostRoundTrip(keras.layers.Layer):
    """Identity through a `tf.numpy_function` (an op XLA has no kernel for); the gradient
    passes straight through. Claims `supports_jit` like any layer."""

    def call(self, inputs):
        host = tf.numpy_function(lambda a: a, [inputs], inputs.dtype)
        host = tf.ensure_shape(host, inputs.shape)
        return inputs + tf.stop_gradient(host - inputs)


def mlp_with_idle_batchnorm():
    """Dense `a` -> Dense `c` -> Dense `out` (softmax, 3 classes) from input `x` (6), plus
    a BatchNormalization `bn` on `a`'s output added to `c`'s input times 0 (`Rescaling`
    `zero`): in training its moving statistics move, while the outputs and every other
    weight's gradient are the plain MLP's."""
    inputs = keras.Input((6,), name="x")
    a = keras.layers.Dense(8, activation="tanh", name="a")(inputs)
    idle = keras.layers.Rescaling(0.0, name="zero")(keras.layers.BatchNormalization(
        name="bn")(a))
    x = keras.layers.Add(name="add")([a, idle])
    x = keras.layers.Dense(8, activation="relu", name="c")(x)
    return keras.Model(inputs, keras.layers.Dense(3, activation="softmax", name="out")(x))


def write_image_folder(folder, per_class, labels=("a", "b", "c"), size=32, seed=0):
    """Random `size`x`size` RGB PNGs `folder/<label>/<i>.png`, `per_class` per label."""
    rng = np.random.default_rng(seed)
    for label in labels:
        (folder / label).mkdir()
        for i in range(per_class):
            pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
            (folder / label / f"{i}.png").write_bytes(tf.io.encode_png(pixels).numpy())


@keras.saving.register_keras_serializable(package="tests")
class CallCounter(keras.layers.Layer):
    """Passes its input through and counts its calls in `calls`: inside a `tf.function`
    the Python body runs once per trace, so this counts the traces."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.calls = 0

    def call(self, inputs):
        self.calls += 1
        return inputs


def counted_deep_head():
    """Input `x` (6) -> CallCounter `count` -> Dense `deep` (relu) -> Dense `out` (3,
    softmax)."""
    inputs = keras.Input((6,), name="x")
    x = CallCounter(name="count")(inputs)
    x = keras.layers.Dense(8, activation="relu", name="deep")(x)
    return keras.Model(inputs, keras.layers.Dense(3, activation="softmax", name="out")(x))


def pre_middle_post(middle):
    """Dense `pre` -> the given layer -> Dense `post` -> Dense `out` (an unnamed model)."""
    inputs = keras.Input((6,), name="x")
    x = keras.layers.Dense(5, name="pre")(inputs)
    x = middle(x)
    x = keras.layers.Dense(4, name="post")(x)
    return keras.Model(inputs, keras.layers.Dense(2, name="out")(x))


def single_layer_model(layer, shape=(3,)):
    """Input `x` -> Dense `d` -> the given layer."""
    inputs = keras.Input(shape, name="x")
    x = keras.layers.Dense(shape[-1], name="d")(inputs)
    return keras.Model(inputs, layer(x), name="m")


def named_model(model_name, layer_name, input_name):
    """A model, a Dense inside a Sequential `inner` and an input, named as given."""
    inputs = keras.Input((4,), name=input_name)
    inner = keras.Sequential([keras.layers.Dense(3, name=layer_name)], name="inner")
    return keras.Model(inputs, keras.layers.Dense(2, name="out")(inner(inputs)),
                       name=model_name)


# --- tf.keras 2.x (tf_keras) models -------------------------------------------------------
def tf_keras_flat():
    import tf_keras

    model = tf_keras.Sequential([
        tf_keras.layers.Dense(6, activation="relu", name="d1", input_shape=(4,)),
        tf_keras.layers.BatchNormalization(name="bn"),
        tf_keras.layers.Dropout(0.2, name="drop"),
        tf_keras.layers.Dense(3, name="d2"),
    ], name="legacy")
    model.get_layer("d1").trainable = False
    return model


def tf_keras_nested():
    """The transfer-learning shape: a functional backbone called inside a functional model."""
    import tf_keras

    inner_in = tf_keras.Input((4,))
    inner_out = tf_keras.layers.Dense(6, name="b1")(inner_in)
    inner_out = tf_keras.layers.BatchNormalization(name="bbn")(inner_out)
    backbone = tf_keras.Model(inner_in, inner_out, name="backbone")
    inputs = tf_keras.Input((4,), name="x")
    outputs = tf_keras.layers.Dense(3, name="head")(backbone(inputs))
    model = tf_keras.Model(inputs, outputs, name="legacy_nested")
    backbone.trainable = False
    return model


def tf_keras_mobilenet_transfer():
    """The canonical tf.keras 2.x transfer model: a frozen MobileNetV2 backbone and a head."""
    import tf_keras

    base = tf_keras.applications.MobileNetV2(input_shape=(32, 32, 3), alpha=0.35,
                                             include_top=False, weights=None)
    base.trainable = False
    inputs = tf_keras.Input((32, 32, 3))
    x = tf_keras.layers.GlobalAveragePooling2D(name="gap")(base(inputs, training=False))
    return tf_keras.Model(inputs, tf_keras.layers.Dense(3, name="head")(x), name="transfer")


def tf_keras_sequential_transfer():
    """The other canonical tf.keras transfer model: Sequential([frozen base, pooling, head])."""
    import tf_keras

    base = tf_keras.applications.MobileNetV2(input_shape=(32, 32, 3), alpha=0.35,
                                             include_top=False, weights=None)
    base.trainable = False
    return tf_keras.Sequential([base, tf_keras.layers.GlobalAveragePooling2D(name="gap"),
                                tf_keras.layers.Dense(3, name="head")], name="transfer")


def tf_keras_augmentation():
    import tf_keras

    augment = tf_keras.Sequential([tf_keras.layers.RandomFlip("horizontal", name="flip"),
                                   tf_keras.layers.Rescaling(1 / 255.0, name="scale")],
                                  name="augment")
    inputs = tf_keras.Input((8, 8, 3))
    x = tf_keras.layers.Conv2D(2, 3, name="conv")(augment(inputs))
    return tf_keras.Model(inputs, tf_keras.layers.GlobalAveragePooling2D(name="gap")(x))


def tf_keras_sequential_of_functional():
    import tf_keras

    inner_in = tf_keras.Input((4,))
    backbone = tf_keras.Model(inner_in, tf_keras.layers.Dense(6, name="b1")(inner_in),
                              name="backbone")
    return tf_keras.Sequential([backbone, tf_keras.layers.Dense(2, name="head")], name="seq")


# --- plain tf.Module models (written as generic SavedModels) --------------------------------
class ScopedNet(tf.Module):
    """A plain tf.Module: no Keras metadata, variables named with scopes."""

    def __init__(self):
        super().__init__()
        rng = np.random.default_rng(0)
        self.k1 = tf.Variable(rng.standard_normal((3, 4)).astype("float32"),
                              name="encoder/dense/kernel")
        self.b1 = tf.Variable(rng.standard_normal(4).astype("float32"),
                              name="encoder/dense/bias")
        self.k2 = tf.Variable(rng.standard_normal((4, 2)).astype("float32"), name="head/kernel")
        self.b2 = tf.Variable(rng.standard_normal(2).astype("float32"), name="head/bias")
        self.steps = tf.Variable(0, dtype=tf.int64, name="steps")

    @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32, name="x")])
    def __call__(self, x):
        hidden = tf.nn.relu(tf.matmul(x, self.k1) + self.b1)
        return {"y": tf.matmul(hidden, self.k2) + self.b2}


class ScopedModule(tf.Module):
    """Two matmuls, variables `encoder/kernel` and `head/kernel` (all ones)."""

    def __init__(self):
        super().__init__()
        self.kernel = tf.Variable(tf.ones((2, 3)), name="encoder/kernel")
        self.head = tf.Variable(tf.ones((3, 1)), name="head/kernel")

    @tf.function(input_signature=[tf.TensorSpec([None, 2], tf.float32, name="x")])
    def __call__(self, x):
        return tf.matmul(tf.matmul(x, self.kernel), self.head)


class TinyModule(tf.Module):
    """One affine map, variables `block/kernel` and `block/bias`, an unnamed input."""

    def __init__(self):
        super().__init__()
        self.kernel = tf.Variable(np.ones((2, 2), "float32"), name="block/kernel")
        self.bias = tf.Variable(np.zeros(2, "float32"), name="block/bias")

    @tf.function(input_signature=[tf.TensorSpec([None, 2], tf.float32)])
    def __call__(self, x):
        return tf.matmul(x, self.kernel) + self.bias


class Scorer(tf.Module):
    """A `dense` scope and a `serve` function with two outputs, `scores` and `total`."""

    def __init__(self):
        super().__init__()
        rng = np.random.default_rng(0)
        with tf.name_scope("dense"):
            self.kernel = tf.Variable(rng.standard_normal((4, 3)).astype("float32"),
                                      name="kernel")
            self.bias = tf.Variable(rng.standard_normal(3).astype("float32"), name="bias")

    @tf.function(input_signature=[tf.TensorSpec((None, 4), tf.float32, name="features")])
    def serve(self, features):
        scores = tf.nn.relu(tf.matmul(features, self.kernel) + self.bias)
        return {"scores": scores, "total": tf.reduce_sum(scores, axis=1, keepdims=True)}


class Regressor(tf.Module):
    """`dense` (kernel, bias) then `scale` (gain): one output `value`."""

    def __init__(self):
        super().__init__()
        with tf.name_scope("dense"):
            self.kernel = tf.Variable(tf.random.stateless_normal((3, 1), (1, 2)),
                                      name="kernel")
            self.bias = tf.Variable(tf.zeros((1,)), name="bias")
        with tf.name_scope("scale"):
            self.gain = tf.Variable(tf.ones((1,)), name="gain")

    @tf.function(input_signature=[tf.TensorSpec((None, 3), tf.float32, name="features")])
    def __call__(self, features):
        return {"value": (tf.matmul(features, self.kernel) + self.bias) * self.gain}


def save_generic_regressor(path):
    """Writes a `Regressor` as a generic SavedModel at `path`."""
    module = Regressor()
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.__call__})


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


def import_source_file(path, name: str):
    """Imports a Python file written by a test (e.g. custom layers for --custom-objects)
    under `name`, registering what it registers."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def make_missing_class_model(folder):
    """A .keras and an .h5 using class `Gizmo` defined in `gizmo_layers.py`, which is then
    unregistered from this process, as if it had been written on another machine.

    Returns:
        (keras_path, h5_path, module_path).
    """
    from pathlib import Path

    folder = Path(folder)
    module_path = folder / "gizmo_layers.py"
    module_path.write_text(GIZMO_MODULE)
    module = import_source_file(module_path, "fs_tests_gizmo_builder")
    inputs = keras.Input((3,), name="x")
    model = keras.Model(inputs, module.Gizmo(2, name="giz")(inputs), name="gizmo_model")
    model.save(folder / "gizmo.keras")
    model.save(folder / "gizmo.h5")
    forget_gizmo()
    return folder / "gizmo.keras", folder / "gizmo.h5", module_path


def forget_gizmo():
    keras.saving.get_custom_objects().pop("fs_missing>Gizmo", None)


SCALE_MODULE = '''
import keras


@keras.saving.register_keras_serializable(package="guitest")
class Scale(keras.layers.Layer):
    def build(self, input_shape):
        self.factor = self.add_weight(shape=(), initializer="ones", name="factor")

    def call(self, x):
        return x * self.factor
'''


def make_custom_scale_model(folder):
    """`custom.keras`, using class `Scale` of `custom_layer.py` (written next to it), which
    is then unregistered from this process, as it is unknown in a fresh one.

    Returns:
        (keras_path, module_path).
    """
    from pathlib import Path

    folder = Path(folder)
    module = folder / "custom_layer.py"
    module.write_text(SCALE_MODULE)
    namespace: dict = {}
    exec(compile(SCALE_MODULE, str(module), "exec"), namespace)  # noqa: S102 - our own code
    inputs = keras.Input((2,), name="x")
    custom = keras.Model(inputs, namespace["Scale"](name="scale")(inputs), name="custom")
    custom.save(folder / "custom.keras")
    # make the registered class unknown again, as it is in a fresh process
    keras.saving.get_custom_objects().pop("guitest>Scale", None)
    return folder / "custom.keras", module


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
