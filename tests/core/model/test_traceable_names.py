"""Layer names TensorFlow refuses inside a compiled function: told before any tracing.

TensorFlow itself is the oracle: each model is traced in a `tf.function`, and
`check_traceable` must refuse exactly the models whose tracing fails.
"""

from __future__ import annotations

import model_builders as mb
import pytest
import tensorflow as tf

from freezestudio.core.errors import UserError
from freezestudio.core.model.signature import check_traceable

NAMES = [  # (model name, inner layer name, input name)
    ("model", "dense", "x"),
    ("model", "my dense", "x"),
    ("model", "_private", "x"),
    ("_model", "dense", "x"),
    ("-model", "dense", "x"),
    (".model", "dense", "x"),
    ("model", "a>b.c-d", "x"),
    ("model", "dénse", "x"),
    ("model", "dense", "in put"),  # input layers are never called: no scope
    ("", "dense", "x"),  # an empty name opens no scope
    ("model", "back\\slash", "x"),  # passes the scope check, fails when run
    ("\\model", "dense", "x"),
]


def _tensorflow_traces(model) -> bool:
    try:
        tf.function(lambda x: model(x, training=True))(tf.ones((2, 4)))
    except (ValueError, tf.errors.InvalidArgumentError):  # at tracing, or when it runs
        return False
    return True


@pytest.mark.parametrize("model_name, layer_name, input_name", NAMES)
def test_refused_exactly_when_tensorflow_cannot_trace(model_name, layer_name,
                                                      input_name):
    model = mb.named_model(model_name, layer_name, input_name)
    traces = _tensorflow_traces(model)
    if traces:
        check_traceable(model, "train this model")
        return
    with pytest.raises(UserError) as error:
        check_traceable(model, "train this model")
    message = str(error.value)
    assert message.startswith("cannot train this model: TensorFlow refuses the layer name")
    culprit = layer_name if not _tensorflow_traces(mb.named_model("model", layer_name, "x")) \
        else model_name
    assert repr(culprit) in message


def test_the_oracle_sees_both_outcomes():
    outcomes = {_tensorflow_traces(mb.named_model(*names)) for names in NAMES}
    assert outcomes == {True, False}
