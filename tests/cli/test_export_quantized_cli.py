"""`freezestudio export --quantize ... --json` in subprocesses, on a CNN trained here."""

import json

import model_builders as mb
import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter
from cli_runner import assert_user_error, run_many

from freezestudio.resources import demo_file

JSON_KEYS = {"format", "output", "bytes", "verified", "samples", "max_abs_diff",
             "top1_agreement", "accuracy", "quantization", "float_bytes"}


@pytest.fixture(scope="module")
def cli(tmp_path_factory):
    folder = tmp_path_factory.mktemp("quantized_cli")
    model, cnn, data, x_val, y_val = mb.trained_cnn_files(folder, 400, 200)
    np.savez(folder / "x_only.npz", x=mb.separable_images(400)[0])
    np.save(folder / "inputs.npy", x_val)
    text = demo_file("text_classifier.keras")
    jobs = {
        "int8": ["export", cnn, "--format", "tflite", "-o", folder / "int8.tflite",
                 "--quantize", "int8", "--calibration-data", data, "--verify-data", data,
                 "--layer-report", "--json"],
        "bare": ["export", cnn, "--format", "tflite", "-o", folder / "dyn.tflite",
                 "--quantize", "--verify-data", data, "--json"],
        "dynamic_report": ["export", cnn, "--format", "tflite", "-o", folder / "no.tflite",
                           "--quantize", "dynamic", "--layer-report"],
        "unlabelled": ["export", cnn, "--format", "tflite", "-o", folder / "nolabels.tflite",
                       "--quantize", "int8", "--calibration-data", folder / "x_only.npz",
                       "--verify-data", folder / "inputs.npy", "--json"],
        "uncalibrated": ["export", cnn, "--format", "tflite", "-o", folder / "never.tflite",
                         "--quantize", "int8"],
        "text_demo": ["export", text, "--format", "tflite", "-o", folder / "text.tflite",
                      "--quantize", "int8", "--io-type", "int8", "--calibration-data", "demo",
                      "--verify-data", "demo", "--json"],
        "onnx": ["export", cnn, "--format", "onnx", "-o", folder / "cnn.onnx", "--quantize",
                 "--verify-data", data],
    }
    runs = dict(zip(jobs, run_many(list(jobs.values())), strict=True))
    return folder, runs, model, x_val, y_val


def report(run) -> dict:
    assert run.returncode == 0, (run.args, run.stderr[-3000:])
    return json.loads(run.stdout.strip().splitlines()[-1])


def test_int8_json_report_matches_litert_on_the_held_out_rows(cli):
    folder, runs, model, x_val, y_val = cli
    summary = report(runs["int8"])
    assert set(summary) >= JSON_KEYS
    path = folder / "int8.tflite"
    assert summary["output"] == str(path) and summary["bytes"] == path.stat().st_size
    assert summary["format"] == "tflite" and summary["quantization"] == "int8"
    assert summary["verified"] is True and summary["samples"] == len(x_val)
    assert summary["bytes"] <= 0.4 * summary["float_bytes"]
    runner = Interpreter(model_path=str(path)).get_signature_runner("serving_default")
    got = runner(image=x_val)["probs"]
    expected = model.predict(x_val, verbose=0)
    assert summary["top1_agreement"] == pytest.approx(
        np.mean(np.argmax(got, 1) == np.argmax(expected, 1)))
    assert summary["accuracy"] == pytest.approx(np.mean(np.argmax(got, 1) == y_val))
    assert summary["max_abs_diff"] == pytest.approx(np.max(np.abs(got - expected)), abs=1e-6)


def test_int8_layer_report_lists_the_quantised_ops_in_the_json(cli):
    runs = cli[1]
    entries = report(runs["int8"])["layer_report"]
    assert {e["layer"] for e in entries} >= {"conv1", "conv2", "hidden", "probs"}
    assert all(e["rmse"] >= 0 and e["scale"] > 0 for e in entries)
    assert [e["rmse_per_scale"] for e in entries] == sorted(
        (e["rmse_per_scale"] for e in entries), reverse=True)
    assert report(runs["bare"])["layer_report"] is None


def test_a_layer_report_of_a_dynamic_export_is_exit_2(cli):
    folder, runs, *_ = cli
    assert_user_error(runs["dynamic_report"], "applies to --format tflite --quantize int8")
    assert not (folder / "no.tflite").exists()


def test_data_without_labels_calibrate_and_verify_without_accuracy(cli):
    folder, runs, model, x_val, _ = cli
    summary = report(runs["unlabelled"])
    assert summary["accuracy"] is None and summary["samples"] == len(x_val)
    runner = Interpreter(model_path=str(folder / "nolabels.tflite")).get_signature_runner(
        "serving_default")
    expected = np.argmax(model.predict(x_val, verbose=0), 1)
    assert summary["top1_agreement"] == pytest.approx(
        np.mean(np.argmax(runner(image=x_val)["probs"], 1) == expected))


def test_a_bare_quantize_still_means_dynamic(cli):
    folder, runs, *_ = cli
    summary = report(runs["bare"])
    assert summary["quantization"] == "dynamic" and summary["top1_agreement"] >= 0.97
    assert (folder / "dyn.tflite").stat().st_size == summary["bytes"]


def test_int8_without_calibration_data_is_exit_2_and_no_file(cli):
    folder, runs, *_ = cli
    assert_user_error(runs["uncalibrated"], "int8 quantisation needs calibration data",
                      "--calibration-data")
    assert not (folder / "never.tflite").exists()
    assert [p.name for p in folder.iterdir() if p.name.startswith(".")] == []


def test_the_text_demo_exports_int8_with_its_token_input_kept(cli):
    folder, runs, *_ = cli
    summary = report(runs["text_demo"])
    assert summary["top1_agreement"] >= 0.95 and summary["samples"] == 400
    assert any("token ids" in note for note in summary["notes"])
    details = Interpreter(model_path=str(folder / "text.tflite")).get_input_details()
    assert details[0]["dtype"] == np.int32


def test_onnx_dynamic_quantisation_prints_its_agreement(cli):
    folder, runs, *_ = cli
    run = runs["onnx"]
    assert run.returncode == 0, run.stderr[-3000:]
    assert "top-1 agreement" in run.stdout and "onnxruntime.quantization" in run.stdout
    assert (folder / "cnn.onnx").is_file()
