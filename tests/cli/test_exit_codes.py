"""Exit codes beyond 0/1/2: an integrity violation after training exits 3, not 1 (which
means an unexpected failure with a log file)."""

from __future__ import annotations

import json
import textwrap

import numpy as np
from cli_runner import run_cli
from model_builders import import_source_file

from freezestudio.commands.exit_codes import ExitCode

DRIFTING_LAYER = textwrap.dedent('''
    import keras


    @keras.saving.register_keras_serializable(package="exit_code_tests")
    class Drifting(keras.layers.Layer):
        """Moves its own (trainable, freezable) weight in every training call, with no
        gradient involved: freezing it cannot stop that, the integrity check must see it."""

        def build(self, input_shape):
            self.drift = self.add_weight(name="drift", shape=(input_shape[-1],),
                                         initializer="zeros")

        def call(self, inputs, training=False):
            if training:
                self.drift.assign_add(keras.ops.ones_like(self.drift))
            return inputs + keras.ops.stop_gradient(self.drift)
''')


def _drifting_model(tmp_path):
    module_path = tmp_path / "drifting.py"
    module_path.write_text(DRIFTING_LAYER)
    module = import_source_file(module_path, "drifting_for_exit_codes")
    import keras

    inputs = keras.Input((4,), name="x")
    hidden = module.Drifting(name="drifting")(inputs)
    outputs = keras.layers.Dense(1, name="head")(hidden)
    model_path = tmp_path / "drifting.keras"
    keras.Model(inputs, outputs).save(model_path)
    rng = np.random.default_rng(0)
    data_path = tmp_path / "data.npz"
    np.savez(data_path, x=rng.normal(size=(32, 4)).astype("float32"),
             y=rng.normal(size=(32, 1)).astype("float32"))
    return module_path, model_path, data_path


def test_a_frozen_weight_that_changed_exits_with_the_integrity_code(tmp_path):
    module_path, model_path, data_path = _drifting_model(tmp_path)
    run = run_cli("train", model_path, "--data", data_path, "-o", tmp_path / "out.keras",
                  "--custom-objects", module_path, "--freeze", "drifting", "--epochs", "1",
                  "--batch-size", "16", "--validation-split", "0", "--loss", "mse", "--json",
                  timeout=300)
    assert run.returncode == ExitCode.INTEGRITY == 3, run.stderr[-2000:]
    assert "integrity violation" in run.last_stderr_line and "drifting:drift" in run.stderr
    summary = json.loads(run.stdout.strip().splitlines()[-1])
    assert summary["integrity"]["ok"] is False
    assert "drifting:drift" in summary["integrity"]["frozen_changed"]
    assert (tmp_path / "out.keras").exists()  # saved, and said so: the user decides
    assert "Traceback" not in run.stderr


FAILING_LAYER = textwrap.dedent('''
    import keras


    @keras.saving.register_keras_serializable(package="exit_code_tests")
    class FailsInTraining(keras.layers.Layer):
        """Fine at inference; its training call fails the way a buggy custom layer does."""

        def call(self, inputs, training=False):
            if training:
                raise RuntimeError("this layer cannot train")
            return inputs
''')


def test_a_failed_run_names_the_log_with_its_traceback(tmp_path, monkeypatch):
    module_path = tmp_path / "failing.py"
    module_path.write_text(FAILING_LAYER)
    module = import_source_file(module_path, "failing_for_exit_codes")
    import keras

    inputs = keras.Input((4,), name="x")
    outputs = keras.layers.Dense(1, name="head")(module.FailsInTraining(name="fails")(inputs))
    model_path = tmp_path / "failing.keras"
    keras.Model(inputs, outputs).save(model_path)
    data_path = tmp_path / "data.npz"
    np.savez(data_path, x=np.ones((8, 4), "float32"), y=np.ones((8, 1), "float32"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    run = run_cli("train", model_path, "--data", data_path, "-o", tmp_path / "out.keras",
                  "--custom-objects", module_path, "--epochs", "1", "--loss", "mse",
                  "--validation-split", "0", timeout=300)
    log = tmp_path / "state" / "freezestudio" / "log" / "freezestudio.log"
    assert run.returncode == ExitCode.USER_ERROR, run.stderr[-2000:]
    assert run.last_stderr_line.endswith(f"nothing was saved (details in {log})")
    assert "this layer cannot train" in log.read_text()
    assert not (tmp_path / "out.keras").exists()
