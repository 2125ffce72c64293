"""`freezestudio train`: the public contract of docs/architecture.md, end to end."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from freezestudio.cli import main
from freezestudio.resources import DEMO_DIR

ROOT = Path(__file__).resolve().parents[2]
DEMO = DEMO_DIR


def run_cli(args, capsys):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def small_cnn_data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("data")
    with np.load(DEMO / "cnn_task_b.npz") as npz:
        np.savez(folder / "cnn.npz", x=npz["x"][:192], y=npz["y"][:192],
                 x_val=npz["x_val"][:64], y_val=npz["y_val"][:64])
    return folder / "cnn.npz"


def test_end_to_end_json_in_a_subprocess(tmp_path, small_cnn_data):
    out_model = tmp_path / "trained.keras"
    proc = subprocess.run(
        [sys.executable, "-m", "freezestudio", "train", DEMO / "cnn_transfer.keras",
         "--data", small_cnn_data, "-o", out_model, "--epochs", "2", "--batch-size", "32",
         "--seed", "1", "--json"],
        capture_output=True, text=True, cwd=ROOT, timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().count("\n") == 0  # --json: nothing else on stdout
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["steps"] == 12 and summary["seconds"] > 0
    assert summary["steps_per_second"] == pytest.approx(12 / summary["seconds"], rel=0.01)
    assert np.isfinite(summary["final_loss"]) and summary["status"] == "completed"
    integrity = summary["integrity"]
    assert sorted(integrity["changed"]) == ["head_dense:bias", "head_dense:kernel",
                                            "head_out:bias", "head_out:kernel"]
    assert "conv_base/block1_conv:kernel" in integrity["unchanged"] and integrity["ok"]
    assert [set(e) for e in summary["history"]] == [
        {"epoch", "loss", "accuracy", "val_loss", "val_accuracy"}] * 2
    assert "sparse_categorical_crossentropy" in summary["losses"][0]
    assert summary["output"] == str(out_model)
    assert proc.stderr.strip() == ""  # not a terminal: no progress bar, no TF chatter
    original = keras.saving.load_model(DEMO / "cnn_transfer.keras")
    trained = keras.saving.load_model(out_model)
    for layer in ("conv_base", "head_out"):
        same = all(np.array_equal(a, b) for a, b in zip(
            original.get_layer(layer).get_weights(), trained.get_layer(layer).get_weights(),
            strict=True))
        assert same == (layer == "conv_base")


def test_text_output_metrics_csv_and_history(tmp_path, small_cnn_data, capsys):
    metrics = tmp_path / "logs" / "run.csv"
    code, out, err = run_cli(["train", DEMO / "cnn_transfer.keras", "--data", small_cnn_data,
                              "-o", tmp_path / "t.keras", "--unfreeze", "conv_base/block3_*",
                              "--cache-features", "off", "--metrics-csv", metrics,
                              "--log-dir", tmp_path / "tb",
                              "--optimizer", "sgd", "--learning-rate", "0.01"], capsys)
    assert code == 0, err
    assert "loss: sparse_categorical_crossentropy: the model's saved compile config" in out
    assert "epoch 1/1: loss" in out and "integrity: " in out
    assert "; XLA off (auto: no GPU, as Keras's fit)" in out  # the CPU-only test machine
    assert f"saved {tmp_path / 't.keras'}" in out.splitlines()[-1]
    with open(metrics) as handle:
        rows = list(csv.reader(handle))
    layers = ["conv_base/block1_conv", "conv_base/block1_bn", "conv_base/block2_conv",
              "conv_base/block2_bn", "conv_base/block3_conv", "conv_base/block3_bn",
              "head_dense", "head_out"]
    assert rows[0] == ["epoch", "step", "loss"] + [f"grad_norm:{p}" for p in layers]
    assert len(rows) == 1 + 6
    for row in rows[1:]:
        filled = [p for p, cell in zip(layers, row[3:], strict=True) if cell]
        assert filled == ["conv_base/block3_conv", "conv_base/block3_bn", "head_dense",
                          "head_out"]
    with open(tmp_path / "logs" / "run.epochs.csv") as handle:
        history = list(csv.reader(handle))
    assert history[0] == ["epoch", "loss", "accuracy", "val_loss", "val_accuracy"]
    assert len(history) == 2
    assert list((tmp_path / "tb" / "train").glob("events.out.tfevents.*"))
    assert list((tmp_path / "tb" / "validation").glob("events.out.tfevents.*"))


def test_validation_split_zero_means_no_validation(tmp_path, small_cnn_data, capsys):
    code, out, err = run_cli(["train", DEMO / "cnn_transfer.keras", "--data", small_cnn_data,
                              "-o", tmp_path / "t.keras", "--validation-split", "0",
                              "--jit-compile", "off", "--json"], capsys)
    assert code == 0, err
    summary = json.loads(out.strip().splitlines()[-1])
    assert set(summary["history"][0]) == {"epoch", "loss", "accuracy"}
    assert summary["xla"] == "XLA off (--jit-compile off)"
    code, out, err = run_cli(["train", DEMO / "cnn_transfer.keras", "--data", small_cnn_data,
                              "-o", tmp_path / "t.keras", "--validation-split", "0.25",
                              "--json"], capsys)
    summary = json.loads(out.strip().splitlines()[-1])
    assert code == 0 and summary["steps"] == 5  # 144 of 192 samples left for training


def test_mse_on_a_regression_model(tmp_path, capsys):
    inputs = keras.Input((4,), name="features")
    hidden = keras.layers.Dense(8, activation="relu", name="hidden")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(1, name="value")(hidden), name="reg")
    model.save(tmp_path / "reg.keras")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 4)).astype("float32")
    y = x @ np.array([1.0, -1.0, 0.5, 2.0], dtype="float32") + 0.1
    np.savez(tmp_path / "reg.npz", x=x, y=y)
    code, out, err = run_cli(["train", tmp_path / "reg.keras", "--data", tmp_path / "reg.npz",
                              "-o", tmp_path / "out.keras", "--loss", "mse", "--epochs", "8",
                              "--learning-rate", "0.01", "--validation-split", "0",
                              "--json"], capsys)
    assert code == 0, err
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["losses"] == ["mean_squared_error: chosen by the user"]
    history = summary["history"]
    assert "mae" in history[0]
    assert history[-1]["loss"] < history[0]["loss"] / 3
    assert sorted(summary["integrity"]["changed"]) == ["hidden:bias", "hidden:kernel",
                                                       "value:bias", "value:kernel"]


def test_csv_data_with_target(tmp_path, capsys):
    inputs = keras.Input((2,), name="features")
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax", name="cls")(inputs))
    model.save(tmp_path / "cls.keras")
    rng = np.random.default_rng(1)
    rows = ["label,a,b"] + [f"{int(a + b > 0)},{a:.3f},{b:.3f}"
                            for a, b in rng.normal(size=(64, 2))]
    (tmp_path / "d.csv").write_text("\n".join(rows) + "\n")
    code, out, err = run_cli(["train", tmp_path / "cls.keras", "--data", tmp_path / "d.csv",
                              "--target", "label", "-o", tmp_path / "o.keras", "--json"], capsys)
    assert code == 0, err
    summary = json.loads(out.strip().splitlines()[-1])
    assert "sparse_categorical_crossentropy" in summary["losses"][0]
    assert summary["steps"] == 2


def test_data_that_do_not_fit_exit_2_with_one_line(tmp_path, capsys):
    np.savez(tmp_path / "bad.npz", x=np.zeros((8, 32, 32, 3), "float32"), y=np.arange(8))
    code, out, err = run_cli(["train", DEMO / "cnn_transfer.keras", "--data",
                              tmp_path / "bad.npz", "-o", tmp_path / "o.keras",
                              "--metrics-csv", tmp_path / "m.csv"], capsys)
    assert code == 2 and out == ""
    assert err.strip().splitlines() == [
        "freezestudio: error: output 'head_out' has 3 units (classes 0..2) but the training "
        "labels range from 0 to 7 (8 classes)"]
    assert not (tmp_path / "o.keras").exists() and not (tmp_path / "m.csv").exists()


def test_layer_names_tensorflow_cannot_trace_exit_2_before_training(tmp_path, capsys):
    inputs = keras.Input((4,), name="features")
    model = keras.Model(inputs, keras.layers.Dense(1, name="my value")(inputs))
    model.save(tmp_path / "spaced.keras")
    np.savez(tmp_path / "d.npz", x=np.ones((8, 4), "float32"), y=np.ones((8, 1), "float32"))
    code, out, err = run_cli(["train", tmp_path / "spaced.keras", "--data", tmp_path / "d.npz",
                              "-o", tmp_path / "o.keras"], capsys)
    assert code == 2 and out == ""
    last = err.strip().splitlines()[-1]
    assert last.startswith("freezestudio: error: cannot train this model: TensorFlow refuses "
                           "the layer name(s) 'my value'")
    assert not (tmp_path / "o.keras").exists()


def test_divergence_exit_2_and_nothing_saved(tmp_path, small_cnn_data, capsys):
    code, out, err = run_cli(["train", DEMO / "text_classifier.keras", "--data", "demo",
                              "-o", tmp_path / "o.keras", "--optimizer", "sgd",
                              "--learning-rate", "1e12", "--epochs", "2", "--json"], capsys)
    assert code == 2
    assert json.loads(out.strip().splitlines()[-1])["status"] == "diverged"
    last = err.strip().splitlines()[-1]
    assert last.startswith("freezestudio: error: training stopped: the ") and " at step " in last
    assert "nothing was saved" in last and not (tmp_path / "o.keras").exists()


def test_bad_options_exit_2(tmp_path, capsys):
    base = ["train", DEMO / "cnn_transfer.keras", "--data", "demo", "-o", tmp_path / "o.keras"]
    for extra, message in [
        (["--validation-split", "1.5"], "--validation-split must be in [0, 1)"),
        (["--optimizer", "adagrad"], "invalid choice: 'adagrad'"),
        (["--device", "gpu:9"], "no device 'gpu:9'"),
        (["--loss", "nonsense"], "unknown loss 'nonsense'"),
        (["--weight-decay", "0.01"], "--weight-decay applies to --optimizer adamw only"),
        (["--optimizer", "sgd", "--weight-decay", "0.01"], "(sgd has no weight decay here)"),
    ]:
        code, _, err = run_cli(base + extra, capsys)
        assert code == 2 and message in err and err.count("\n") == 1, err
    code, _, err = run_cli(["train", DEMO / "cnn_transfer.keras", "--data", "demo",
                            "-o", tmp_path / "o.onnx"], capsys)
    assert code == 2 and "choose a name ending in .keras or .h5" in err
