"""Devices, mixed precision, MirroredStrategy on two logical CPUs, generic SavedModels."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import model_builders as mb
import numpy as np
import pytest
import tensorflow as tf

from freezestudio.core.data import Split, TrainingData
from freezestudio.core.errors import UserError
from freezestudio.core.files.loading import open_document
from freezestudio.core.training.config import COMPLETED, TrainingConfig
from freezestudio.core.training.devices import list_devices, select_devices
from freezestudio.core.training.trainer import Trainer
from freezestudio.resources import DEMO_DIR

ROOT = Path(__file__).resolve().parents[3]


def test_devices_are_listed_and_unknown_ones_refused():
    names = [d.name for d in list_devices()]
    assert "/CPU:0" in names
    assert select_devices("cpu").devices == ["/CPU:0"]
    assert select_devices("/cpu:0").describe() == "/CPU:0"
    assert not select_devices(None).distributed
    with pytest.raises(UserError, match="no device 'gpu:7'; available: /CPU:0"):
        select_devices("gpu:7")


def test_mixed_bfloat16_on_cpu_trains_and_restores_the_policy():
    document = open_document(DEMO_DIR / "cnn_transfer.keras")
    with np.load(DEMO_DIR / "cnn_task_b.npz") as npz:
        data = TrainingData("cnn", Split([npz["x"][:64]], [npz["y"][:64]]))
    result = Trainer(document, data, TrainingConfig(epochs=1, batch_size=32, device="cpu",
                                                    mixed_precision=True,
                                                    cache_features="off")).run()
    assert result.status == COMPLETED and result.integrity.ok
    assert np.isfinite(result.final_loss)
    assert "head_out:kernel" in result.integrity.changed
    assert all(w.variable.dtype == "float32" for w in document.weights)
    head = document.model.get_layer("head_dense")
    assert head.dtype_policy.name == "float32"


_MIRRORED = textwrap.dedent("""
    import json, sys
    import numpy as np
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from freezestudio.core.data import Split, TrainingData
    from freezestudio.resources import DEMO_DIR
    from freezestudio.core.files.loading import open_document
    from freezestudio.core.edits.plans import matching_nodes
    from freezestudio.core.training.trainer import Trainer
    from freezestudio.core.training.config import Reporter, TrainingConfig

    document = open_document(DEMO_DIR / "cnn_transfer.keras")
    document.set_trainable(matching_nodes(document, "conv_base/block3_conv"), True)
    with np.load(DEMO_DIR / "cnn_task_b.npz") as npz:
        data = TrainingData("cnn", Split([npz["x"][:256]], [npz["y"][:256]]),
                            Split([npz["x_val"][:64]], [npz["y_val"][:64]]), "explicit")
    losses, norms = [], []
    class R(Reporter):
        def step_finished(self, r):
            losses.append(r.loss)
            norms.append(r.grad_norms)
        def run_started(self, info):
            print("device:", info.device, file=sys.stderr)
    result = Trainer(document, data, TrainingConfig(
        epochs=3, batch_size=32, device="cpu:0,cpu:1", seed=0)).run(R())
    # the same first steps on one device and on two: identical loss and gradient norms
    from freezestudio.core.edits.plans import Plan, apply_plan
    twins = {}
    for device in ("cpu:0", "cpu:0,cpu:1"):
        text = open_document(DEMO_DIR / "text_classifier.keras")
        apply_plan(text, Plan.from_dict({"freezestudio_plan": 1,
                                         "stop_gradient_after": ["embedding"]}))
        with np.load(DEMO_DIR / "text_task_b.npz") as npz:
            # 97 and 33 samples: the last batches (1 sample) leave a replica empty
            text_data = TrainingData("t", Split([npz["x"][:97]], [npz["y"][:97]]),
                                     Split([npz["x_val"][:33]], [npz["y_val"][:33]]))
        steps, sizes = [], []
        class S(Reporter):
            def step_finished(self, r):
                steps.append([r.loss, r.grad_norms["hidden"], r.grad_norms["classifier"]])
                sizes.append([r.update_sizes["hidden"], r.update_sizes["classifier"]])
            def epoch_finished(self, r):
                steps.append([r.loss, r.val_loss, r.val_metrics["accuracy"]])
        Trainer(text, text_data, TrainingConfig(batch_size=32, shuffle=False,
                                                device=device, update_sizes=True)).run(S())
        twins[device], twins[device + " update sizes"] = steps, sizes
    print(json.dumps({"twins": twins}))
    # feature caching under the strategy: a frozen nested backbone (its BatchNorm in
    # inference mode), Dropout in the head; 129 training and 33 validation samples at
    # batch 32: each last batch (1 sample) leaves a replica without samples (uncached, a
    # convolution on it would fail, as in Keras's fit: that replica runs no forward pass)
    import keras
    sys.path.insert(0, "tests")
    import model_builders as mb
    keras.utils.set_random_seed(1)
    saved = sys.argv[1] + "/nested.keras"
    mb.functional_with_backbone().save(saved)
    rng = np.random.default_rng(1)
    images = rng.normal(size=(160, 8, 8, 3)).astype("float32")
    labels = rng.integers(0, 2, 160)
    data = TrainingData("s", Split([images[:129]], [labels[:129]]),
                        Split([images[127:]], [labels[127:]]))
    cached = {}
    for mode in ("on", "off"):
        seq = open_document(saved)
        seq.set_trainable(matching_nodes(seq, "backbone"), False)
        rows = []
        class C(Reporter):
            def step_finished(self, r):
                rows.append([r.loss, r.grad_norms["head_dense"], r.grad_norms["out"]])
            def epoch_finished(self, r):
                rows.append([r.loss, r.val_loss, 1.0])
        run = Trainer(seq, data, TrainingConfig(epochs=2, batch_size=32, device="cpu:0,cpu:1",
                                                seed=3, cache_features=mode)).run(C())
        cached[mode] = {"status": run.status, "message": run.message,
                        "cache": run.info.feature_cache, "rows": rows,
                        "weights": {w.id: w.variable.numpy().tolist() for w in seq.weights}}
    # a loaded Sequential holding a functional backbone: its replica's variable paths
    # differ (the Sequential's name as a prefix); it trains on two devices as on one
    inner_in = keras.Input((8, 8, 3))
    inner = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3)(inner_in))
    keras.Sequential([keras.Input((8, 8, 3)), keras.Model(inner_in, inner, name="features"),
                      keras.layers.Dense(2, name="out")]).save(sys.argv[1] + "/seq.keras")
    small = TrainingData("q", Split([images[:64]], [labels[:64]]))
    sequential = {}
    for device in ("cpu:0", "cpu:0,cpu:1"):
        rows = []
        class Q(Reporter):
            def step_finished(self, r):
                rows.append([r.loss, r.grad_norms["out"]])
        run = Trainer(open_document(sys.argv[1] + "/seq.keras"), small, TrainingConfig(
            batch_size=16, device=device, shuffle=False)).run(Q())
        sequential[device] = [run.status, run.message, rows]
    cached["sequential"] = sequential
    # the pass over the replicas (one global batch of 4 x 2, then 1 sample on one device)
    # gives what it gives on one device
    from freezestudio.core.training.feature_cache import compute_features
    from freezestudio.core.training.setup import prepare_setup
    setup = prepare_setup(seq, data, TrainingConfig(device="cpu:0,cpu:1"))
    nine = Split([images[:9]], [labels[:9]])
    with setup.placement.scope():
        [[split_pass]], [[one_pass]] = (
            compute_features(setup.trainables.cache, data, [nine], 4, placement)
            for placement in (setup.placement, None))
    cached["pass"] = [split_pass.shape[0], float(np.abs(split_pass - one_pass).max()),
                      float(np.abs(one_pass).min())]
    print(json.dumps({"cached": cached}))
    print(json.dumps({"status": result.status, "message": result.message,
                      "steps": result.steps, "losses": losses, "norms": norms,
                      "device": result.info.device,
                      "epochs": [e.as_row() for e in result.history],
                      "integrity": result.integrity.to_dict()}))
""")


@pytest.fixture(scope="module")
def mirrored(tmp_path_factory):
    """The JSON lines `_MIRRORED` prints (one subprocess for the tests below)."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    folder = tmp_path_factory.mktemp("mirrored")
    proc = subprocess.run([sys.executable, "-c", _MIRRORED, str(folder)], capture_output=True,
                          text=True, cwd=ROOT, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [json.loads(line) for line in proc.stdout.strip().splitlines()[-3:]]
    return {key: value for line in lines for key, value in line.items()}


def test_mirrored_strategy_on_two_logical_cpus(mirrored):
    out, twins = mirrored, mirrored["twins"]
    np.testing.assert_allclose(twins["cpu:0,cpu:1"], twins["cpu:0"], rtol=1e-4)
    # |dw|/|w| under the strategy (read on each replica) as on one device
    sizes = twins["cpu:0 update sizes"]
    assert len(sizes) == 4 and all(s > 0 for row in sizes for s in row)
    np.testing.assert_allclose(twins["cpu:0,cpu:1 update sizes"], sizes, rtol=1e-4)
    assert len(twins["cpu:0"]) == 4 + 1
    assert out["status"] == COMPLETED, out["message"]
    assert out["device"] == "MirroredStrategy over /CPU:0, /CPU:1"
    assert out["steps"] == 3 * 8
    epochs = out["epochs"]
    assert epochs[-1]["loss"] < epochs[0]["loss"]
    assert "val_loss" in epochs[0] and "accuracy" in epochs[0]
    integrity = out["integrity"]
    assert integrity["ok"] and not integrity["trained_unchanged"]
    assert set(integrity["changed"]) >= {"conv_base/block3_conv:kernel", "head_out:kernel"}
    assert "conv_base/block2_conv:kernel" in integrity["unchanged"]
    for step in out["norms"]:
        assert step["conv_base/block1_conv"] is None and step["head_out"] > 0


def test_feature_caching_under_mirrored_strategy_trains_as_uncached(mirrored):
    on, off = mirrored["cached"]["on"], mirrored["cached"]["off"]
    assert on["status"] == off["status"] == COMPLETED, (on["message"], off["message"])
    assert on["cache"] == "caching the outputs of backbone (1 layer call(s) upstream)"
    assert off["cache"] == "feature caching off"
    # every step's loss and the head's gradient norm (reduced over the replicas), every
    # epoch's loss and validation loss
    assert len(on["rows"]) == 2 * 5 + 2 and all(v > 0 for row in on["rows"] for v in row)
    np.testing.assert_allclose(on["rows"], off["rows"], rtol=1e-5)
    for key, value in off["weights"].items():
        if key.startswith("backbone/"):  # frozen, its BatchNorm included: the same bits
            assert on["weights"][key] == value, key
        np.testing.assert_allclose(on["weights"][key], value, rtol=1e-5, atol=1e-6,
                                   err_msg=key)
    samples, difference, smallest = mirrored["cached"]["pass"]
    assert samples == 9 and smallest > 0 and difference < 1e-6


def test_a_loaded_sequential_with_a_nested_backbone_trains_on_two_devices(mirrored):
    """Its replica's variable paths differ from the model's: replicated all the same, and
    every step's loss and gradient norm as on one device."""
    one, two = mirrored["cached"]["sequential"].values()
    assert one[0] == two[0] == COMPLETED, (one[1], two[1])
    assert len(two[2]) == 4
    np.testing.assert_allclose(two[2], one[2], rtol=1e-5)


def test_generic_savedmodel_trains_through_the_wrapper(tmp_path):
    mb.save_generic_regressor(tmp_path / "sm")
    document = open_document(tmp_path / "sm")
    assert document.source_format == "savedmodel"
    gain = next(w for w in document.weights if w.id.startswith("scale:"))
    document.set_trainable([gain], False)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(128, 3)).astype("float32")
    y = (x @ np.array([[1.0], [-2.0], [0.5]], dtype="float32") + 0.3).astype("float32")
    before = {w.id: w.variable.numpy().copy() for w in document.weights}
    losses = []

    from freezestudio.core.training.config import Reporter

    class R(Reporter):
        def epoch_finished(self, report):
            losses.append(report.loss)

    result = Trainer(document, TrainingData("arrays", Split([x], [y])),
                     TrainingConfig(epochs=5, batch_size=16, learning_rate=0.05)).run(R())
    assert result.status == COMPLETED, result.message
    assert "mean_squared_error" in result.info.losses[0]
    assert losses[-1] < losses[0] / 2
    assert np.array_equal(before[gain.id], gain.variable.numpy())
    assert set(result.integrity.changed) == {w.id for w in document.weights
                                             if w.id.startswith("dense:")}
    assert result.integrity.ok
    assert result.info.feature_cache == "feature caching off"
    with pytest.raises(UserError, match="^--cache-features on needs a Keras model$"):
        Trainer(document, TrainingData("arrays", Split([x], [y])),
                TrainingConfig(cache_features="on")).prepare()


def test_keras_optimizer_accepts_the_wrapped_variables_names():
    # docs/architecture.md: TFSMLayer failed with Adam on names containing ':'; ours must not.
    variable = tf.Variable(tf.ones((2,)), name="scope/kernel")
    assert ":" in variable.name
    optimizer = keras.optimizers.Adam()
    optimizer.build([variable])
    optimizer.apply([tf.ones((2,))], [variable])
    assert not np.array_equal(variable.numpy(), np.ones(2))


def test_apply_policy_switches_compute_dtype_and_back():
    from freezestudio.core.training.devices import apply_policy

    inputs = keras.Input((4,), name="x")
    model = keras.Model(inputs, keras.layers.Dense(2, name="d")(inputs))
    restore = apply_policy(model, "mixed_bfloat16")
    assert model(np.zeros((1, 4), "float32")).dtype == "bfloat16"
    assert model.get_layer("d").kernel.dtype == "float32"
    restore()
    assert model(np.zeros((1, 4), "float32")).dtype == "float32"


def test_memory_growth_is_requested_before_devices_are_probed():
    from freezestudio.core.training.devices import enable_memory_growth

    code = ("import os; from freezestudio.core.tf_import import import_tensorflow_quietly; "
            "import_tensorflow_quietly(); print(os.environ['TF_FORCE_GPU_ALLOW_GROWTH'])")
    env = {k: v for k, v in os.environ.items() if k != "TF_FORCE_GPU_ALLOW_GROWTH"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=120)
    assert proc.stdout.strip() == "true", proc.stderr[-2000:]
    gpus = tf.config.list_physical_devices("GPU")
    assert len(enable_memory_growth()) <= len(gpus)
