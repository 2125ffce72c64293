"""Verification: every export loaded back with its own runtime and compared with the model.

The same inputs (random, seeded; or the caller's samples) go through the edited model in
inference mode (eagerly, stop-gradient layers included) and through the export, loaded
with the runtime a user would use: `tf.saved_model.load`, LiteRT's interpreter
(`tflite.interpreter`), onnxruntime, a GraphDef imported into a fresh graph, or
FreezeStudio's own loader for `.keras`/`.h5`. Each output's max absolute difference is
reported and checked against `tolerance * max(1, max |model output|)`.

A quantised export differs by design: it is judged by the top-1 agreement of its
classifier outputs with the model's on the user's samples (`ExportOptions.min_agreement`),
its difference only reported; on random inputs nothing of a quantised export is judged.
"""

from __future__ import annotations

from pathlib import Path

from freezestudio.core.errors import UserError
from freezestudio.core.export.inference_model import DEFAULT_INT_BOUND, InferenceModel
from freezestudio.core.export.options import ExportFormat
from freezestudio.core.export.report import OutputCheck

RUNTIMES = {
    ExportFormat.KERAS: "FreezeStudio's loader (keras.saving.load_model)",
    ExportFormat.H5: "FreezeStudio's loader (keras.saving.load_model)",
    ExportFormat.SAVEDMODEL: "tf.saved_model.load (serving_default)",
    ExportFormat.TFLITE: "LiteRT (serving_default)",
    ExportFormat.ONNX: "onnxruntime (CPU)",
    ExportFormat.FROZEN_GRAPH: "tf.import_graph_def in a fresh graph + tf.compat.v1.Session",
}


def runtime(fmt: str) -> str:
    """What the export of `fmt` is run with (TFLite: LiteRT, else tf.lite.Interpreter)."""
    if fmt == ExportFormat.TFLITE:
        from freezestudio.core.export.tflite import runtime_name

        return runtime_name()
    return RUNTIMES[fmt]


VARIABLE_DIM = 8
"""Size given to unknown non-batch dimensions of random inputs."""


def verification_inputs(inference: InferenceModel, options) -> dict:
    """`{input name: array}`: the caller's samples, or seeded random data.

    Raises:
        UserError: samples miss an input, or an input's dtype has no random generator.
    """
    import numpy as np

    if options.verification is not None:
        return options.verification.feeds(inference)
    if options.sample_inputs is not None:
        missing = [t.name for t in inference.inputs if t.name not in options.sample_inputs]
        if missing:
            raise UserError(f"the sample inputs lack {', '.join(missing)} (the model's inputs: "
                            f"{', '.join(inference.input_names)})")
        return {t.name: np.asarray(options.sample_inputs[t.name], dtype=t.dtype)
                for t in inference.inputs}
    rng = np.random.default_rng(options.seed)
    hints = inference.hints
    feeds = {}
    for info in inference.inputs:
        shape = [options.batch_size if i == 0 and d is None else (d or VARIABLE_DIM)
                 for i, d in enumerate(info.shape)]
        if "float" in info.dtype:
            feeds[info.name] = rng.standard_normal(shape).astype(info.dtype)
        elif "int" in info.dtype:
            bound = hints.int_bounds.get(info.name, DEFAULT_INT_BOUND)
            if info.name in hints.padded and len(shape) > 1 and bound > 1:
                feeds[info.name] = _padded_sequences(rng, shape, bound).astype(info.dtype)
            else:
                feeds[info.name] = rng.integers(0, bound, size=shape).astype(info.dtype)
        elif info.dtype == "bool":
            feeds[info.name] = rng.integers(0, 2, size=shape).astype(bool)
        elif info.dtype == "string":
            feeds[info.name] = _random_texts(rng, shape, hints.vocabularies.get(info.name))
        else:
            raise UserError(f"cannot make random {info.dtype} data for the input '{info.name}' "
                            "to verify the export: export without verification")
    return feeds


FALLBACK_WORDS = ("the", "model", "frozen", "layer", "gradient", "stops", "here", "x7")
"""Words for random text when no vocabulary layer reads the input."""


def _padded_sequences(rng, shape: list, bound: int):
    """Token ids 1..bound-1, right-padded with 0 (the masked value) from a random length
    on: masks must be exercised, and random ids alone almost never contain a 0 (a TFLite
    export of a masked bidirectional LSTM was wrong only on padded rows)."""
    import numpy as np

    ids = rng.integers(1, bound, size=shape)
    lengths = rng.integers(1, shape[1] + 1, size=shape[0])
    lengths[0] = shape[1]  # one full row
    positions = np.arange(shape[1]).reshape([1, shape[1]] + [1] * (len(shape) - 2))
    return np.where(positions < lengths.reshape([-1] + [1] * (len(shape) - 1)), ids, 0)


def _random_texts(rng, shape: list, vocabulary: list | None):
    """Random texts of 1-6 words, drawn from the tokens the model knows when it has them
    (plus an unknown one, so the out-of-vocabulary path runs too)."""
    import numpy as np

    words = list(vocabulary or FALLBACK_WORDS)[:1000] + ["zzunknownzz"]
    texts = [" ".join(rng.choice(words, size=rng.integers(1, 7)))
             for _ in range(int(np.prod(shape)))]
    return np.array(texts, dtype=object).reshape(shape)


def compare(names, expected, actual, tolerance: float | None, labels=None,
            min_agreement: float | None = None) -> list[OutputCheck]:
    """One check per output.

    Args:
        tolerance: the float limit on `max |diff|` (None: reported only).
        labels: one array per output (class indices or one-hot), for the accuracy.
        min_agreement: the least top-1 agreement of each classifier output (an output
            of shape `(batch, classes)` with 2+ classes); None: reported only.
    """
    import numpy as np

    checks = []
    labels = labels or [None] * len(names)
    for name, want, got, truth in zip(names, expected, actual, labels, strict=True):
        want = np.asarray(want, dtype=np.float64)
        got = np.asarray(got, dtype=np.float64)
        if want.shape != got.shape:
            raise UserError(f"the export's output '{name}' has shape {got.shape}, "
                            f"the model's {want.shape}")
        diff = float(np.max(np.abs(want - got))) if want.size else 0.0
        if np.isnan(diff):
            diff = float("inf")
        limit = None
        if tolerance is not None:
            scale = float(np.max(np.abs(want))) if want.size else 0.0
            limit = tolerance * max(1.0, scale)
        agreement = accuracy = model_accuracy = None
        classifier = want.ndim == 2 and want.shape[1] >= 2 and len(want) > 0
        if classifier:
            agreement = float(np.mean(np.argmax(want, 1) == np.argmax(got, 1)))
            classes = _classes(truth, want.shape)
            if classes is not None:
                accuracy = float(np.mean(np.argmax(got, 1) == classes))
                model_accuracy = float(np.mean(np.argmax(want, 1) == classes))
        checks.append(OutputCheck(name, diff, limit, agreement,
                                  min_agreement if classifier else None, accuracy,
                                  model_accuracy))
    return checks


def _classes(truth, shape):
    """Class indices from sparse or one-hot labels of an output of `shape` (else None)."""
    import numpy as np

    if truth is None:
        return None
    truth = np.asarray(truth)
    if truth.shape == shape:
        return np.argmax(truth, 1)
    if truth.shape in ((shape[0],), (shape[0], 1)) and np.issubdtype(truth.dtype, np.integer):
        return truth.reshape(-1)
    return None


def run_export(fmt: str, path: Path, inference: InferenceModel, feeds: dict) -> list:
    """The outputs of the export at `path` on `feeds`, in `inference.outputs` order."""
    if fmt == ExportFormat.SAVEDMODEL:
        from freezestudio.core.export.savedmodel import run_savedmodel

        return run_savedmodel(path, inference, feeds)
    if fmt == ExportFormat.TFLITE:
        from freezestudio.core.export.tflite import run_tflite

        return run_tflite(path, inference, feeds)
    if fmt == ExportFormat.ONNX:
        from freezestudio.core.export.onnx import run_onnx

        return run_onnx(path, inference, feeds)
    if fmt == ExportFormat.FROZEN_GRAPH:
        from freezestudio.core.export.frozen_graph import run_frozen_graph

        return run_frozen_graph(path, inference, feeds)
    raise ValueError(f"no runtime for {fmt}")


def failure_message(fmt: str, checks: list[OutputCheck]) -> str:
    bad = [c for c in checks if not c.ok]
    shown = "; ".join(c.failure() for c in bad[:3])
    return (f"the {fmt} export does not compute what the model computes: {shown}; "
            "nothing was written")
