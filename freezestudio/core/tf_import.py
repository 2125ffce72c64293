"""Imports TensorFlow and Keras once, without TensorFlow's C++ start-up chatter.

TensorFlow's native code writes CPU-feature, CUDA-probe and oneDNN notes straight to file
descriptor 2 at import, before any Python logging applies; `TF_CPP_MIN_LOG_LEVEL` does not
silence all of them. While importing, fd 2 points at /dev/null; Python exceptions raised
by the import are unaffected.
"""

from __future__ import annotations

import logging
import os
import sys


def import_tensorflow_quietly(before_context=None) -> None:
    """Imports tensorflow and keras, and initialises devices, with native stderr muted.

    Args:
        before_context: called with the tensorflow module after its import and before
            anything creates TensorFlow's context (keras, device listing): what must
            configure the process first (a multi-worker strategy). Not called when both
            are already imported.
    """
    if "tensorflow" in sys.modules and "keras" in sys.modules:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # GPUs allocate memory as needed instead of grabbing the whole card (training in the
    # GUI process); it must be decided before the device probing below.
    os.environ.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        import tensorflow

        if before_context is not None:
            before_context(tensorflow)
        import keras  # noqa: F401

        tensorflow.config.list_logical_devices()  # device probing logs too: do it now
        tensorflow.get_logger().setLevel(logging.ERROR)
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
