"""Which loss (and metric) to train with, and why: always shown to the user.

The metrics come from the saved compile config too (`core/training/metrics.py`).

Order of preference per output: the user's choice; the loss in the model's saved compile
config (adjusted between sparse and one-hot cross-entropy to the labels at hand); else a
guess from the output's final activation, its shape and the labels' kind and dtype. For a
cross-entropy, `from_logits` follows the activation (no softmax/sigmoid: logits).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace

import numpy as np

from freezestudio.core.data.fit import DENSE, SPARSE
from freezestudio.core.errors import UserError
from freezestudio.core.model.signature import IOSpec
from freezestudio.core.training import metrics
from freezestudio.core.training.metrics import serialized_metrics

SPARSE_CE = "sparse_categorical_crossentropy"
CATEGORICAL_CE = "categorical_crossentropy"
BINARY_CE = "binary_crossentropy"
_ALIASES = {"mse": "mean_squared_error", "mae": "mean_absolute_error",
            "sparse_cce": SPARSE_CE, "cce": CATEGORICAL_CE, "bce": BINARY_CE,
            "crossentropy": None}
_CROSS_ENTROPIES = {SPARSE_CE, CATEGORICAL_CE, BINARY_CE}
_PROBABILITY_ACTIVATIONS = {"softmax": (SPARSE_CE, CATEGORICAL_CE), "sigmoid": (BINARY_CE,)}


@dataclass(frozen=True)
class LossChoice:
    """The loss for one output.

    Attributes:
        name: Keras loss name ("sparse_categorical_crossentropy", "mean_squared_error").
        from_logits: for cross-entropies, whether the output holds logits.
        reason: why it was chosen, for the user.
        output: the output's name.
        saved_metrics: the output's metrics in the saved compile config (serialised as
            Keras stores them) that FreezeStudio can build; empty: the default `metric`.
        accuracy: what "accuracy" means for the output (`metrics.accuracy_kind`).
    """

    name: str
    from_logits: bool
    reason: str
    output: str = ""
    saved_metrics: tuple = ()
    accuracy: str = metrics.CATEGORICAL

    def describe(self) -> str:
        logits = " (from logits)" if self.from_logits else ""
        return f"{self.name}{logits}: {self.reason}"

    def build(self):
        """A callable `(y_true, y_pred) -> loss per sample` (not yet averaged)."""
        import keras

        if self.name in _CROSS_ENTROPIES:
            cls = {SPARSE_CE: keras.losses.SparseCategoricalCrossentropy,
                   CATEGORICAL_CE: keras.losses.CategoricalCrossentropy,
                   BINARY_CE: keras.losses.BinaryCrossentropy}[self.name]
            return cls(from_logits=self.from_logits, reduction=None)
        return keras.losses.get(self.name)

    def metrics(self, prefix: str = "") -> list:
        """The run's metric objects for this output (`metrics.build_metrics`)."""
        return metrics.build_metrics(self, prefix)

    def metric(self, prefix: str = ""):
        """The default metric: accuracy for classification losses, mean absolute error
        otherwise."""
        import keras

        name = f"{prefix}accuracy"
        if self.name == SPARSE_CE:
            return keras.metrics.SparseCategoricalAccuracy(name=name)
        if self.name == CATEGORICAL_CE:
            return keras.metrics.CategoricalAccuracy(name=name)
        if self.name == BINARY_CE:
            return keras.metrics.BinaryAccuracy(name=name, threshold=0.0 if self.from_logits
                                                else 0.5)
        return keras.metrics.MeanAbsoluteError(name=f"{prefix}mae")


def canonical_name(name: str) -> str:
    """The Keras name of a loss given by the user. Raises UserError if unknown."""
    import keras

    key = name.strip().lower()
    key = _ALIASES.get(key, key) or key
    try:
        loss = keras.losses.get(key)
    except (ValueError, TypeError):
        loss = None
    if loss is None:
        raise UserError(f"unknown loss '{name}' (e.g. {SPARSE_CE}, {CATEGORICAL_CE}, "
                        f"{BINARY_CE}, mse, mae, huber)")
    return key


def choose_losses(specs, kinds, labels, compile_config: dict | None,
                  override: str | None) -> list[LossChoice]:
    """One LossChoice per output.

    Args:
        specs: the outputs' IOSpecs.
        kinds: each output's label kind (SPARSE or DENSE, see `core.data.fit`).
        labels: each output's training labels (for their dtype and values).
        compile_config: the model's saved compile config, if any.
        override: the user's loss name, if any.
    """
    saved = _saved_losses(compile_config, specs)
    saved_metrics = metrics.saved_metrics(compile_config, [spec.name for spec in specs])
    choices = [_with_metrics(_choose(spec, kind, y, override, saved[i]), spec, kind,
                             saved_metrics[i])
               for i, (spec, kind, y) in enumerate(zip(specs, kinds, labels, strict=True))]
    weights = (compile_config or {}).get("loss_weights")
    if weights and not override:
        note = f"; the saved loss_weights {json.dumps(weights)} are not applied"
        choices = [replace(choice, reason=choice.reason + note) for choice in choices]
    return choices


def _with_metrics(choice: LossChoice, spec: IOSpec, kind: str, saved) -> LossChoice:
    usable, unusable = saved
    reason = choice.reason
    if unusable:
        reason += (f"; the saved metric(s) {', '.join(unusable)} cannot be rebuilt and are "
                   "left out")
    return replace(choice, reason=reason, saved_metrics=usable,
                   accuracy=metrics.accuracy_kind(spec.units, kind))


def _choose(spec: IOSpec, kind: str, y: np.ndarray, override, saved) -> LossChoice:
    logits = spec.activation not in _PROBABILITY_ACTIVATIONS and spec.activation is not None
    activation = spec.activation or "unknown"
    if override:
        name = canonical_name(override)
        _check_kind(name, kind, spec)
        return LossChoice(name, logits and name in _CROSS_ENTROPIES, "chosen by the user",
                          spec.name)
    unused = ""
    if saved and saved[0] is None:
        unused = f"; the saved loss {saved[2]} is not one FreezeStudio can use (see --loss)"
    elif saved:
        name, saved_logits, dropped = saved
        adjusted = _adjust_to_labels(name, kind)
        reason = "the model's saved compile config"
        if adjusted != name:
            reason += f" ({name}, adjusted to the {kind} labels)"
        if dropped:
            reason += f"; its {dropped} not applied (Keras's default is used)"
        try:
            _check_kind(adjusted, kind, spec)
            return LossChoice(adjusted, saved_logits and adjusted in _CROSS_ENTROPIES, reason,
                              spec.name)
        except UserError:
            pass  # the saved loss cannot take these labels: guess instead
    guess = _guess(spec, kind, y, logits, activation)
    return replace(guess, reason=guess.reason + unused)


def _guess(spec: IOSpec, kind: str, y: np.ndarray, logits: bool, activation: str):
    units = spec.units
    if activation == "softmax":
        name = SPARSE_CE if kind == SPARSE else CATEGORICAL_CE
        return LossChoice(name, False, f"softmax output with {units} units, {kind} labels",
                          spec.name)
    if activation == "sigmoid":
        return LossChoice(BINARY_CE, False, f"sigmoid output with {units} unit(s)", spec.name)
    if kind == SPARSE:
        return LossChoice(SPARSE_CE, True, f"{activation} output with {units} units and integer "
                          "class labels (treated as logits)", spec.name)
    integer_labels = np.issubdtype(y.dtype, np.integer) or y.dtype == np.bool_
    if integer_labels and units == 1 and set(np.unique(y).tolist()) <= {0, 1}:
        return LossChoice(BINARY_CE, True, f"{activation} one-unit output and 0/1 integer labels "
                          "(treated as logits)", spec.name)
    if integer_labels and units > 1 and np.all(y.sum(axis=-1) == 1) and np.all(y >= 0):
        return LossChoice(CATEGORICAL_CE, True, f"{activation} output and one-hot labels "
                          "(treated as logits)", spec.name)
    return LossChoice("mean_squared_error", False, f"{activation} output with {units} unit(s) "
                      "and real-valued targets (regression)", spec.name)


def _adjust_to_labels(name: str, kind: str) -> str:
    if name == SPARSE_CE and kind == DENSE:
        return CATEGORICAL_CE
    if name == CATEGORICAL_CE and kind == SPARSE:
        return SPARSE_CE
    return name


def _check_kind(name: str, kind: str, spec: IOSpec) -> None:
    if name == SPARSE_CE and kind != SPARSE:
        raise UserError(f"loss {SPARSE_CE} needs integer class labels for output "
                        f"'{spec.name}' ({spec.units} units); the labels are one value per unit")
    if name != SPARSE_CE and kind == SPARSE:
        raise UserError(f"loss {name} needs labels shaped like output '{spec.name}' "
                        f"{tuple(spec.shape[1:])}; the labels are class indices "
                        f"(use {SPARSE_CE}, or one-hot labels)")


def _saved_losses(compile_config: dict | None, specs) -> list:
    """Per output, from a saved compile config: None (no saved loss), or (name or None if
    unusable, from_logits, what is dropped or unusable: a description for the user)."""
    loss = (compile_config or {}).get("loss")
    if isinstance(loss, dict) and "class_name" not in loss:
        return [_parse_loss(loss.get(spec.name)) for spec in specs]
    if isinstance(loss, list | tuple):
        return [_parse_loss(item) for item in loss] + [None] * (len(specs) - len(loss))
    return [_parse_loss(loss)] * len(specs)


_PLAIN_LOSS_OPTIONS = {"name", "reduction", "dtype", "from_logits"}


def _non_default_options(class_name, config: dict) -> dict:
    """The options of a saved Keras loss object that differ from its class's defaults
    (what a loss chosen by name would not apply)."""
    import keras

    cls = getattr(keras.losses, str(class_name), None)
    try:
        defaults = cls().get_config() if isinstance(cls, type) else {}
    except Exception:  # noqa: BLE001 - a loss class that needs arguments: no defaults known
        defaults = {}
    return {k: v for k, v in config.items()
            if k not in _PLAIN_LOSS_OPTIONS and k in defaults and v != defaults[k]}


def _parse_loss(loss):
    if isinstance(loss, str):
        try:
            return canonical_name(loss), False, ""
        except UserError:
            return None, False, f"'{loss}'"
    if isinstance(loss, dict) and not isinstance(loss.get("config"), dict):  # a function
        return None, False, f"'{loss.get('config') or loss.get('class_name')}'"
    if isinstance(loss, dict):
        config = loss["config"]
        name = config.get("name") or loss.get("class_name", "")
        options = _non_default_options(loss.get("class_name"), config)
        label = f"{loss.get('class_name', name)}"
        dropped = ", ".join(f"{k}={v}" for k, v in options.items())
        for candidate in (str(name), str(loss.get("class_name", ""))):  # huber_loss, Huber
            try:
                return (canonical_name(candidate), bool(config.get("from_logits", False)),
                        f"{dropped} {'is' if len(options) == 1 else 'are'}" if dropped else "")
            except UserError:
                continue
        return None, False, f"{label}({dropped})"
    return None


def trained_compile_config(choices: list[LossChoice], optimizer, with_metrics: bool) -> dict:
    """The compile config of what a run trained with, serialised as Keras stores it
    (`model.get_compile_config()`), so a saved file keeps it: `optimizer` (a fresh optimizer
    of the run's kind), one loss per output (by name; cross-entropies as objects, which keep
    `from_logits`) and the run's metrics per output (its saved ones or its default; none
    without `with_metrics`). Keras's default reduction, not the step's per-sample one."""
    import keras

    serialize = keras.saving.serialize_keras_object
    losses, metric_objects = [], []
    for choice in choices:
        built = choice.build()
        losses.append(serialize(type(built)(from_logits=choice.from_logits))
                      if choice.name in _CROSS_ENTROPIES else choice.name)
        metric_objects.append(serialized_metrics(choice) if with_metrics else None)
    single = len(choices) == 1
    return {"optimizer": serialize(optimizer),
            "loss": losses[0] if single else losses,
            "loss_weights": None,
            "metrics": (metric_objects[0] if single else metric_objects) if with_metrics
            else None,
            "weighted_metrics": None}
