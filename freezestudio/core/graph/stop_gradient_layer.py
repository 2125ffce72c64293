"""The stop-gradient layer FreezeStudio inserts: identity forward, no gradient backward.

Registered as `freezestudio>StopGradient`, so a saved model that contains it loads in safe
mode once this module is imported (a Lambda would not).
"""

from __future__ import annotations

import keras


@keras.saving.register_keras_serializable(package="freezestudio")
class StopGradient(keras.layers.Layer):
    """`keras.ops.stop_gradient` on its input; passes masks and dtypes through unchanged."""

    freezestudio_stop_gradient = True

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True
        # Keep the input's dtype (int, float16, ...) instead of casting to the layer policy.
        self._convert_input_args = False

    def call(self, inputs):
        return keras.ops.stop_gradient(inputs)

    def compute_output_shape(self, input_shape):
        return input_shape

    def compute_output_spec(self, inputs):
        return keras.KerasTensor(inputs.shape, dtype=inputs.dtype)
