"""XLA for the training step: `--jit-compile auto|on|off`, decided as Keras decides it.

Keras 3's `Trainer.compile(jit_compile="auto")` (`keras/src/trainers/trainer.py`,
`_resolve_auto_jit_compile` and `model_supports_jit`) turns XLA on only when TensorFlow
sees a physical device other than a CPU, no distribute strategy runs the model, and the
model "supports jit": every layer's `supports_jit` is True (False for e.g. the lookup and
hashing layers, several random image augmentations, cuDNN LSTM/GRU), op determinism is
off, and it is not a TensorFlow GPU on Apple silicon. `jit_compile=True` on a model that
does not support it warns and proceeds without XLA. `resolve_jit_compile` applies the same
rule (calling Keras's own `model_supports_jit`, a private function, so the rule cannot
drift) and returns the note Keras would warn with.

A model whose layers all claim `supports_jit` can still hold an op XLA has no kernel for
(a `tf.numpy_function`, a string op): `is_xla_compile_failure` recognises the error of
its first, failed compilation, and the step then runs without XLA (`step.py`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from freezestudio.core.errors import UserError, first_line

JIT_MODES = ("auto", "on", "off")


@dataclass(frozen=True)
class JitDecision:
    """Whether the step is compiled with XLA, and why (`reason` is shown to the user)."""

    enabled: bool
    reason: str

    def describe(self) -> str:
        return f"XLA {'on' if self.enabled else 'off'} ({self.reason})"


def resolve_jit_compile(mode: str, model, distributed: bool) -> JitDecision:
    """Keras's rule for `jit_compile` (see the module docstring).

    Args:
        mode: "auto", "on" or "off".
        model: the Keras model the step runs, or None (a generic SavedModel: nothing to
            ask, XLA is tried and falls back if it cannot compile).
        distributed: a distribute strategy runs the step.

    Raises:
        UserError: "on" under a distribute strategy (the step's all-reduces run between
            the replicas' compiled parts; FreezeStudio does not compile them with XLA).
    """
    if mode == "off":
        return JitDecision(False, "--jit-compile off")
    if distributed:
        if mode == "on":
            raise UserError("--jit-compile on cannot run distributed (several devices or "
                            "--multi-worker): use --jit-compile auto or off")
        return JitDecision(False, "auto: a distribute strategy runs the step, as Keras's fit")
    if mode == "auto":
        import tensorflow as tf

        if not [d for d in tf.config.list_physical_devices() if d.device_type != "CPU"]:
            return JitDecision(False, "auto: no GPU, as Keras's fit")
    unsupported = _unsupported(model)
    if unsupported:
        return JitDecision(False, f"{mode}: {unsupported}; Keras's fit would run without "
                                  "XLA too")
    return JitDecision(True, "--jit-compile on" if mode == "on" else "auto: a GPU, as "
                       "Keras's fit")


def _unsupported(model) -> str:
    """Why Keras's `model_supports_jit` refuses `model` ("" when it accepts it)."""
    if model is None:
        return ""
    from keras.src.trainers.trainer import model_supports_jit

    if model_supports_jit(model):
        return ""
    layers = [f"'{layer.name}' ({type(layer).__name__})"
              for layer in model._flatten_layers() if not layer.supports_jit]
    if layers:
        return f"layer {', '.join(layers[:3])} does not support XLA"
    return "Keras does not use XLA for this model here (op determinism, or a GPU on macOS)"


def is_xla_compile_failure(exc: BaseException) -> bool:
    """The error TensorFlow raises when XLA cannot compile a function (an op without an
    XLA kernel, a shape it must know but cannot), before anything of it ran."""
    import tensorflow as tf

    if not isinstance(exc, (tf.errors.InvalidArgumentError, tf.errors.UnimplementedError,
                            tf.errors.InternalError)):
        return False
    text = str(exc)
    return "XLA" in text or "must be a compile-time constant" in text


_UNSUPPORTED_OPS = re.compile(r"on XLA_\w+_JIT: (.+?)(?: \(No registered|\{\{|$)", re.MULTILINE)


def xla_failure_reason(exc: BaseException) -> str:
    """What made XLA refuse a function, short: the unsupported operations TensorFlow names
    (e.g. "unsupported operations: PyFunc"), else the error's first line. The graph's own
    name comes first in TensorFlow's message and grows with every trace, so a plain cut of
    the message can lose the operations."""
    found = _UNSUPPORTED_OPS.search(str(exc))
    if found:
        return f"unsupported operations: {found.group(1).strip()}"
    return first_line(exc, 200)
