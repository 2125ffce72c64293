"""SavedModel for serving: one `serving_default` signature over the deployment model.

Written with Keras's `ExportArchive` (the machinery behind `model.export`) so that the
signature's input keys are the model's input names and its output keys the output names
(plain `model.export` names outputs `output_0`, `output_1`, ...). A generic SavedModel is
re-saved with `tf.saved_model.save` and the same kind of signature.
"""

from __future__ import annotations

from pathlib import Path

from freezestudio.core.export.inference_model import InferenceModel

SIGNATURE = "serving_default"


def write_savedmodel(inference: InferenceModel, path: Path, options=None) -> list[str]:
    """Writes the SavedModel directory `path` (which must not exist).

    Returns:
        Notes for the report (none).
    """
    import tensorflow as tf

    function = inference.function()
    if inference.keras_model is not None:
        import keras

        archive = keras.export.ExportArchive()
        archive.track(inference.keras_model)
        archive.add_endpoint(SIGNATURE, function)
        archive.write_out(str(path), verbose=False)
    else:
        module = tf.Module()
        module.model = inference.trackable
        module.serve = function
        tf.saved_model.save(module, str(path), signatures={SIGNATURE: function})
    return []


def run_savedmodel(path: Path, inference: InferenceModel, feeds: dict) -> list:
    """Loads `path` with `tf.saved_model.load` and runs `serving_default` on `feeds`."""
    import numpy as np
    import tensorflow as tf

    signature = tf.saved_model.load(str(path)).signatures[SIGNATURE]
    result = signature(**{t.name: tf.constant(feeds[t.name], dtype=t.dtype)
                          for t in inference.inputs})
    return [np.asarray(result[name]) for name in inference.output_names]
