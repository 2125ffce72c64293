"""`freezestudio export`: the real command in subprocesses, as a user runs it."""

import json
import subprocess
import sys
import warnings

import keras
import model_builders as mb
import numpy as np
import pytest
from cli_runner import assert_user_error, cli_env, run_many


@pytest.fixture(scope="module")
def cli(tmp_path_factory):
    folder = tmp_path_factory.mktemp("export_cli")
    text, two, seq = folder / "text.keras", folder / "two.keras", folder / "seq.keras"
    mb.text_lstm().save(text)
    mb.shared_two_outputs().save(two)
    mb.sequential_with_backbone().save(seq)
    plan = folder / "plan.json"
    plan.write_text(json.dumps({"freezestudio_plan": 1, "trainable": [
        {"match": "embedding", "value": False}], "stop_gradient_after": ["embedding"]}))
    (folder / "taken").write_text("a file")
    spaced = folder / "spaced.keras"
    inputs = keras.Input((4,), name="features")
    keras.Model(inputs, keras.layers.Dense(2, name="my dense")(inputs)).save(spaced)
    jobs = {
        "tflite": ["export", text, "--plan", plan, "--format", "tflite",
                   "-o", folder / "text.tflite"],
        "onnx": ["export", two, "--format", "onnx", "--opset", "13", "-o", folder / "two.onnx"],
        "savedmodel": ["export", seq, "--stop-gradient-after", "backbone/bn", "--freeze",
                       "backbone", "--format", "savedmodel", "-o", folder / "seq_sm"],
        "keras": ["export", text, "--plan", plan, "--format", "keras",
                  "-o", folder / "text_copy.keras"],
        "under_file": ["export", two, "--format", "frozen-graph",
                       "-o", folder / "taken" / "g.pb"],
        "quantize_onnx": ["export", two, "--format", "onnx", "--quantize", "float16",
                          "-o", folder / "q.onnx"],
        "wrong_suffix": ["export", two, "--format", "keras", "-o", folder / "two_copy.h5"],
        "bad_format": ["export", two, "--format", "pickle", "-o", folder / "x.pkl"],
        "untraceable_names": ["export", spaced, "--format", "savedmodel",
                              "-o", folder / "spaced_sm"],
        "untraceable_names_keras": ["export", spaced, "--format", "keras",
                                    "-o", folder / "spaced_copy.keras"],
    }
    runs = dict(zip(jobs, run_many(list(jobs.values())), strict=True))
    return folder, runs


def ok(run):
    assert run.returncode == 0, (run.args, run.stderr[-3000:])
    assert "Traceback" not in run.stderr
    return run.stdout.splitlines()


def test_tflite_with_a_plan_prints_the_verification_report(cli):
    folder, runs = cli
    lines = ok(runs["tflite"])
    assert lines[0].startswith(f"exported {folder / 'text.tflite'} (tflite)")
    assert lines[1].startswith("verified with LiteRT")
    assert lines[2].strip().startswith("dense: max |diff|") and lines[2].endswith("ok")
    assert any("unrolled" in line for line in lines)
    import tensorflow as tf

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        interpreter = tf.lite.Interpreter(model_path=str(folder / "text.tflite"))
    runner = interpreter.get_signature_runner("serving_default")
    tokens = np.random.default_rng(0).integers(0, 50, (2, 12)).astype("int32")
    assert runner(tokens=tokens)["dense"].shape == (2, 2)


def test_onnx_opset_is_honoured(cli):
    import onnx

    folder, runs = cli
    lines = ok(runs["onnx"])
    assert sum("max |diff|" in line for line in lines) == 2
    assert "oneDNN" not in runs["onnx"].stderr  # tf2onnx imports TensorFlow: muted too
    assert any("opset 13" in line for line in lines)
    model = onnx.load(str(folder / "two.onnx"))
    assert [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")] == [13]
    assert sorted(i.name for i in model.graph.input) == ["a", "b"]


def test_savedmodel_after_edits(cli):
    folder, runs = cli
    lines = ok(runs["savedmodel"])
    assert any(line.startswith("verified with tf.saved_model.load") for line in lines)
    assert (folder / "seq_sm" / "saved_model.pb").is_file()


def test_keras_copy_keeps_the_plan(cli):
    from freezestudio.core.files.loading import open_document

    folder, runs = cli
    ok(runs["keras"])
    copy = open_document(folder / "text_copy.keras")
    assert copy.stop_points == ["embedding"]
    assert not copy.is_weight_trainable(copy.weight("embedding:embeddings"))


@pytest.mark.parametrize("job, fragments", [
    ("under_file", ["taken is a file, not a folder"]),
    ("quantize_onnx", ["onnx cannot be quantised as float16", "onnx: dynamic"]),
    ("wrong_suffix", ["ending in .keras"]),
    ("bad_format", ["invalid choice: 'pickle'"]),
    ("untraceable_names", ["cannot export this model for deployment: TensorFlow refuses the "
                           "layer name(s) 'my dense'"]),
])
def test_user_errors(cli, job, fragments):
    folder, runs = cli
    assert_user_error(runs[job], *fragments)
    assert not (folder / "taken").is_dir() and not (folder / "q.onnx").exists()
    assert not (folder / "two_copy.h5").exists() and not (folder / "never.tflite").exists()
    assert not (folder / "spaced_sm").exists()
    assert [p.name for p in folder.iterdir() if p.name.startswith(".")] == []


def test_layer_names_tensorflow_cannot_trace_still_export_as_keras(cli):
    """The editable copy needs no tracing: it is written and verified (eagerly)."""
    folder, runs = cli
    lines = ok(runs["untraceable_names_keras"])
    assert (folder / "spaced_copy.keras").is_file()
    assert any("my_dense" in line and line.endswith("ok") for line in lines)


def _run_python(code, *args):
    done = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True,
                          text=True, env=cli_env(), timeout=180)
    return done


def test_missing_onnx_tools_name_the_install_command(cli):
    folder, _ = cli
    code = ("import sys; sys.modules['tf2onnx'] = None\n"
            "from freezestudio.cli import main\n"
            "sys.exit(main(sys.argv[1:]))")
    done = _run_python(code, "export", folder / "two.keras", "--format", "onnx",
                       "-o", folder / "missing.onnx")
    assert done.returncode == 2, done.stderr[-2000:]
    last = [line for line in done.stderr.splitlines() if line.strip()][-1]
    assert last.startswith("freezestudio: error: ONNX export needs tf2onnx")
    assert "pip install" in last and "Traceback" not in done.stderr
    assert not (folder / "missing.onnx").exists()


def test_failed_verification_exits_2_and_shows_the_report(cli, tmp_path, monkeypatch, capsys):
    from freezestudio.cli import main
    from freezestudio.core.export import verify

    folder, _ = cli
    real = verify.run_export
    monkeypatch.setattr(verify, "run_export", lambda *a: [o + 0.5 for o in real(*a)])
    code = main(["export", str(folder / "two.keras"), "--format", "frozen-graph",
                 "-o", str(tmp_path / "g.pb")])
    captured = capsys.readouterr()
    assert code == 2
    assert captured.out.count("FAILED") == 2
    assert captured.err.startswith("freezestudio: error: the frozen-graph export does not")
    assert list(tmp_path.iterdir()) == []
