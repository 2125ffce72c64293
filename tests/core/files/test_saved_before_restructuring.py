"""A `.keras` file saved before the code moved into capability sub-packages still opens,
shows the same state and trains as it says (tests/data/README.md).

`tests/data/stop_gradient_3df99af.keras`: `features -> encoder -> middle -> head`, a
stop-gradient point after `encoder`, `head:bias` frozen; its config names the layer module
`freezestudio.core.stop_gradient_layer` and the registered name `freezestudio>StopGradient`.
It is opened in a fresh process (nothing imported or registered the layer before) and in
this one; Keras and `tf.GradientTape` are the oracles, and the file is never written.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from cli_runner import run_cli

from freezestudio.core.data import Split, TrainingData
from freezestudio.core.files.loading import open_document
from freezestudio.core.files.saving import save_document
from freezestudio.core.training.config import COMPLETED, TrainingConfig
from freezestudio.core.training.trainer import Trainer

SAVED = Path(__file__).resolve().parents[2] / "data" / "stop_gradient_3df99af.keras"
TESTS = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
REGISTERED_NAME = "freezestudio>StopGradient"

ENCODER = ["encoder:kernel", "encoder:bias"]
MIDDLE = ["middle:kernel", "middle:bias"]
TRAINABLE = sorted([*ENCODER, *MIDDLE, "head:kernel"])  # head:bias is frozen

# Run in a fresh interpreter: only `open_document` may bring the stop-gradient layer in.
FRESH = """
import json, sys
import keras
registered_before = sys.argv[4] in keras.saving.get_custom_objects()
modules_before = sorted(m for m in sys.modules if m.startswith("freezestudio"))
from freezestudio.core.files.loading import open_document
document = open_document(sys.argv[1])
sys.path[:0] = [sys.argv[2], sys.argv[3]]
from test_saved_before_restructuring import facts, training_facts
print(json.dumps({"registered_before": registered_before,
                  "freezestudio_modules_before": modules_before,
                  **facts(document), **training_facts(document)}))
"""


def facts(document) -> dict:
    """What the document says, what Keras trains, and what `tf.GradientTape` computes."""
    model = document.model
    by_variable = {id(w.variable): w.id for w in document.weights}
    rng = np.random.default_rng(0)
    x = rng.standard_normal((16, 6)).astype("float32")
    mix = tf.constant(rng.standard_normal((16, 3)).astype("float32"))  # softmax rows sum to 1
    variables = [w.variable for w in document.weights]
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(model(x, training=True) * mix)
    gradients = tape.gradient(loss, variables)
    return {
        "stop_points": document.stop_points,
        "trainable": {w.id: document.is_weight_trainable(w) for w in document.weights},
        "receives_gradient": {w.id: bool(document.receives_gradient(w))
                              for w in document.weights},
        "document_trainable": sorted(w.id for w in document.trainable_weights()),
        "keras_trainable": sorted(by_variable.get(id(v), f"? {v.path}")
                                  for v in model.trainable_weights),
        "keras_trainable_count": len(model.trainable_weights),
        "gradient": {w.id: None if g is None else bool(np.any(np.asarray(g) != 0))
                     for w, g in zip(document.weights, gradients, strict=True)},
    }


def training_facts(document) -> dict:
    """One real epoch on a few random samples: which weights' bytes changed."""
    before = {w.id: w.variable.numpy().tobytes() for w in document.weights}
    rng = np.random.default_rng(1)
    data = TrainingData("arrays", Split([rng.standard_normal((24, 6)).astype("float32")],
                                        [rng.integers(0, 3, 24)]))
    result = Trainer(document, data, TrainingConfig(
        epochs=1, batch_size=8, learning_rate=0.05, loss="sparse_categorical_crossentropy",
        seed=0, cache_features="off")).run()
    return {"status": result.status, "message": result.message,
            "changed": sorted(w.id for w in document.weights
                              if w.variable.numpy().tobytes() != before[w.id])}


def check_facts(found: dict) -> None:
    assert found["stop_points"] == ["encoder"]
    assert found["trainable"]["head:bias"] is False
    assert found["document_trainable"] == TRAINABLE
    assert found["keras_trainable"] == found["document_trainable"]
    assert found["keras_trainable_count"] == len(TRAINABLE)
    for weight in ENCODER:  # TensorFlow: nothing reaches the encoder
        assert not found["gradient"][weight], weight
        assert found["receives_gradient"][weight] is False, weight
    for weight in [*MIDDLE, "head:kernel"]:
        assert found["gradient"][weight] is True, weight
        assert found["receives_gradient"][weight] is True, weight


def check_training(found: dict) -> None:
    assert found["status"] == COMPLETED, found["message"]
    changed = set(found["changed"])
    assert not changed & {*ENCODER, "head:bias"}, changed  # bit-identical
    assert set(MIDDLE) <= changed, changed


@pytest.fixture(scope="module")
def original_bytes():
    return SAVED.read_bytes()


def test_the_file_is_the_one_described(original_bytes):
    import zipfile

    with zipfile.ZipFile(SAVED) as archive:
        config = archive.read("config.json").decode()
    assert '"module": "freezestudio.core.stop_gradient_layer"' in config
    assert f'"registered_name": "{REGISTERED_NAME}"' in config


def test_opens_in_a_fresh_process(original_bytes):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run([sys.executable, "-c", FRESH, str(SAVED), str(HERE), str(TESTS),
                           REGISTERED_NAME],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["registered_before"] is False
    assert found["freezestudio_modules_before"] == []
    check_facts(found)
    check_training(found)
    assert SAVED.read_bytes() == original_bytes


def test_opens_in_this_process(original_bytes):
    document = open_document(SAVED)
    check_facts(facts(document))
    assert {id(v) for v in document.model.trainable_weights} == {
        id(w.variable) for w in document.trainable_weights()}
    assert not document.modified
    assert SAVED.read_bytes() == original_bytes


def test_trains_in_this_process(original_bytes):
    document = open_document(SAVED)
    encoder = [document.weight(w).variable.numpy().copy() for w in ENCODER]
    bias = document.weight("head:bias").variable.numpy().copy()
    check_training(training_facts(document))
    for weight, value in zip(ENCODER, encoder, strict=True):
        assert document.weight(weight).variable.numpy().tobytes() == value.tobytes(), weight
    assert document.weight("head:bias").variable.numpy().tobytes() == bias.tobytes()
    assert document.stop_points == ["encoder"]
    assert SAVED.read_bytes() == original_bytes


def test_inspect_json_reports_the_same(original_bytes):
    run = run_cli("inspect", SAVED, "--json")
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(run.stdout)

    def walk(node):
        yield node
        for child in node["children"]:
            yield from walk(child)

    nodes = list(walk(report["model"]))
    weights = {w["id"]: w for node in nodes for w in node["weights"]}
    assert [p for node in nodes for p in node["stop_gradient_after"]] == ["encoder"]
    assert weights["head:bias"]["trainable"] is False
    assert sorted(w for w, info in weights.items() if info["trainable"]) == TRAINABLE
    document = open_document(SAVED)
    here = facts(document)
    assert {w: info["trainable"] for w, info in weights.items()} == here["trainable"]
    assert {w: info["receives_gradient"] for w, info in weights.items()} == \
        here["receives_gradient"]
    assert report["totals"]["trainable_params"] == document.counts().trainable
    assert report["totals"]["receiving_gradient_params"] == document.receiving_params()
    assert SAVED.read_bytes() == original_bytes


def test_saved_again_and_reopened_keeps_the_point(original_bytes, tmp_path):
    document = open_document(SAVED)
    x = np.random.default_rng(2).standard_normal((4, 6)).astype("float32")
    expected = np.asarray(document.model(x))
    save_document(document, tmp_path / "again.keras")
    reopened = open_document(tmp_path / "again.keras")
    assert reopened.stop_points == ["encoder"]
    assert reopened.is_weight_trainable(reopened.weight("head:bias")) is False
    check_facts(facts(reopened))
    np.testing.assert_allclose(np.asarray(reopened.model(x)), expected, rtol=1e-6)
    assert SAVED.read_bytes() == original_bytes
