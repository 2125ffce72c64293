"""Which metrics a run computes per output: the model's saved compile config's, built as Keras
builds them.

The metrics of a saved compile config (`model.compile(metrics=...)`) are taken as Keras's
`compile` takes them: for one output, every metric listed; for several, a list with one
entry per output or a dict by output name. Each is built as Keras builds it:
"accuracy"/"acc" becomes binary accuracy (a one-unit output), sparse categorical accuracy
(class-index labels) or categorical accuracy; another string is looked up with
`keras.metrics.get` and keeps the string as its name ("mae"); a serialised metric object or
function keeps its own name. Several outputs' metric names are prefixed `<output>_`, as in
Keras's logs. A saved metric FreezeStudio cannot rebuild (custom and not registered) is left
out and the loss's reason says so.

Without saved metrics: FreezeStudio's default, `LossChoice.metric` (accuracy for a
cross-entropy loss, its threshold following `from_logits`; mean absolute error otherwise).
"""

from __future__ import annotations

from freezestudio.core.data.fit import SPARSE
from freezestudio.core.errors import first_line

BINARY, SPARSE_CATEGORICAL, CATEGORICAL = "binary", "sparse_categorical", "categorical"
"""What "accuracy" means for an output (Keras's `is_binary_or_sparse_categorical`)."""
_ACCURACY_NAMES = ("accuracy", "acc")


def accuracy_kind(units: int | None, label_kind: str) -> str:
    """Keras's reading of "accuracy" for an output of `units` and labels of `label_kind`:
    binary for a one-unit output, else sparse categorical for class-index labels."""
    if units == 1:
        return BINARY
    return SPARSE_CATEGORICAL if label_kind == SPARSE else CATEGORICAL


def saved_metrics(compile_config: dict | None, output_names: list[str]) -> list[tuple]:
    """Per output, `(usable identifiers, descriptions of unusable ones)` from the saved
    compile config's `metrics` (both empty where it lists none for that output)."""
    metrics = (compile_config or {}).get("metrics")
    count = len(output_names)
    if not metrics:
        per_output = [None] * count
    elif count == 1:
        per_output = [_flatten(metrics)]
    elif isinstance(metrics, list | tuple) and len(metrics) == count:
        per_output = list(metrics)
    elif isinstance(metrics, dict) and "class_name" not in metrics \
            and set(metrics) <= set(output_names):
        per_output = [metrics.get(name) for name in output_names]
    else:  # Keras's compile would refuse it for this model
        return [((), (f"metrics {_label(metrics)} (not one entry per output)",))] * count
    return [_usable(_flatten(entry)) for entry in per_output]


def build_metrics(choice, prefix: str = "") -> list:
    """The Keras metric objects for one output's `LossChoice` (fresh, unbuilt): its saved
    metrics, else its default (`LossChoice.metric`)."""
    if choice.saved_metrics:
        return [_build(identifier, choice.accuracy, prefix)
                for identifier in choice.saved_metrics]
    return [choice.metric(prefix)]


def serialized_metrics(choice) -> list:
    """What a compile config stores for the metrics `build_metrics` gives."""
    import keras

    if choice.saved_metrics:
        return list(choice.saved_metrics)
    return [keras.saving.serialize_keras_object(choice.metric())]


def _flatten(entry) -> list:
    if entry is None:
        return []
    if isinstance(entry, list | tuple):
        return [item for part in entry for item in _flatten(part)]
    return [entry]


def _usable(identifiers: list) -> tuple:
    usable, unusable = [], []
    for identifier in identifiers:
        try:
            _build(identifier, BINARY, "")
        except Exception as exc:  # noqa: BLE001 - a custom or unregistered metric
            unusable.append(f"'{_label(identifier)}' "
                            f"({first_line(exc, 120, default=type(exc).__name__)})")
        else:
            usable.append(identifier)
    return tuple(usable), tuple(unusable)


def _build(identifier, accuracy: str, prefix: str):
    import keras

    if isinstance(identifier, str) and identifier.lower() in _ACCURACY_NAMES:
        cls = {BINARY: keras.metrics.BinaryAccuracy,
               SPARSE_CATEGORICAL: keras.metrics.SparseCategoricalAccuracy,
               CATEGORICAL: keras.metrics.CategoricalAccuracy}[accuracy]
        return cls(name=prefix + identifier)
    if isinstance(identifier, dict):
        identifier = keras.saving.deserialize_keras_object(identifier)
    metric = keras.metrics.get(identifier)
    if isinstance(identifier, str):
        name = identifier
    else:
        name = getattr(metric, "name", None) or getattr(metric, "__name__", "metric")
    if not isinstance(metric, keras.metrics.Metric):
        metric = keras.metrics.MeanMetricWrapper(metric)
    elif metric is identifier:  # a deserialised object: a fresh one for this run
        metric = type(metric).from_config(metric.get_config())
    metric.name = prefix + name
    return metric


def _label(identifier) -> str:
    if isinstance(identifier, dict):
        inner = identifier.get("config")
        return str(inner if isinstance(inner, str) else identifier.get("class_name", "?"))
    return str(identifier)
