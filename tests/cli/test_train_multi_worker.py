"""`train --multi-worker`: two real worker processes on loopback (MultiWorkerMirroredStrategy
from TF_CONFIG, with feature caching), the unreachable-worker timeout, and bad TF_CONFIGs.

The two-worker run is bounded: both processes are killed and the test fails when they
have not finished within `PAIR_SECONDS`.
"""

import csv
import json
import socket
import subprocess
import sys
import time

import keras
import model_builders as mb
import numpy as np
import pytest
from cli_runner import cli_env

from freezestudio.core.data import Split, TrainingData
from freezestudio.core.edits.plans import Plan, apply_plan
from freezestudio.core.errors import UserError
from freezestudio.core.files.loading import open_document
from freezestudio.core.training.cluster import output_path, read_tf_config
from freezestudio.core.training.config import COMPLETED, Reporter, TrainingConfig
from freezestudio.core.training.trainer import Trainer

PAIR_SECONDS = 45  # wall time: the pair took 5.4 s in a whole-suite run (TensorFlow import, trace)
SAMPLES, BATCH, EPOCHS, SEED = 144, 48, 2, 5  # caching pass: 128 over the pair, 16 alone


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _tf_config(addresses, index):
    return json.dumps({"cluster": {"worker": addresses},
                       "task": {"type": "worker", "index": index}})


def _start(args, tf_config):
    env = cli_env()
    env["TF_CONFIG"] = tf_config
    return subprocess.Popen([sys.executable, "-m", "freezestudio", *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _finish(processes, seconds):
    """(returncode, stdout, stderr) of each process; kills all and fails after `seconds`."""
    deadline, done = time.monotonic() + seconds, []
    try:
        for process in processes:
            out, err = process.communicate(timeout=max(1.0, deadline - time.monotonic()))
            done.append((process.returncode, out, err))
    except subprocess.TimeoutExpired:
        for process in processes:
            process.kill()
        outputs = [p.communicate() for p in processes]
        pytest.fail(f"the workers did not finish within {seconds} s: "
                    f"{[err[-1500:] for _, err in outputs]}")
    return done


@pytest.fixture(scope="module")
def problem(tmp_path_factory):
    folder = tmp_path_factory.mktemp("multi_worker")
    keras.utils.set_random_seed(0)
    model = mb.mlp_with_idle_batchnorm()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(SAMPLES, 6)).astype("float32")
    y = rng.integers(0, 3, SAMPLES)
    model.save(folder / "model.keras")
    np.savez(folder / "data.npz", x=x, y=y)
    return folder, x, y


def _weights(path):
    document = open_document(path)
    return {w.id: w.variable.numpy() for w in document.weights}


class _Norms(Reporter):
    def __init__(self):
        self.steps = []

    def step_finished(self, report):
        self.steps.append([report.loss, *(v for v in report.grad_norms.values()
                                          if v is not None)])


def _csv_steps(path):
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    return [[float(row["loss"]), *(float(v) for k, v in row.items()
                                   if k.startswith("grad_norm:") and v)] for row in rows]


def test_two_workers_on_loopback_train_as_one_process_would(problem):
    """The frozen `a` is cached on each worker (`auto`) and the head trains under the
    strategy; the oracle is one process without caching. (An uncached pair differs only in
    the model the step runs: tests/core/training/test_devices.py compares the two under a
    strategy.)"""
    folder, x, y = problem
    addresses = [f"127.0.0.1:{port}" for port in _free_ports(2)]
    out = folder / "trained.keras"
    args = ["train", folder / "model.keras", "--data", folder / "data.npz", "-o", out,
            "--freeze", "a", "--epochs", EPOCHS, "--batch-size", BATCH, "--seed", SEED,
            "--validation-split", "0", "--optimizer", "sgd", "--learning-rate", "0.1",
            "--metrics-csv", folder / "steps.csv",
            "--cluster-timeout", "30", "--multi-worker", "--json"]
    start = time.monotonic()
    chief_run, other_run = _finish([_start(args, _tf_config(addresses, i)) for i in (0, 1)],
                                   PAIR_SECONDS)
    elapsed = time.monotonic() - start
    summaries = []
    for code, stdout, stderr in (chief_run, other_run):
        assert code == 0, stderr[-3000:]
        summaries.append(json.loads(stdout.strip().splitlines()[-1]))
    chief, other = summaries
    assert chief["worker"] == {"type": "worker", "index": 0, "workers": 2, "chief": True}
    assert other["worker"]["chief"] is False
    assert chief["output"] == str(out)
    assert other["output"] == str(folder / "trained.worker-1.keras")
    assert chief["feature_cache"] == other["feature_cache"] == \
        "caching the outputs of a (1 layer call(s) upstream)"
    assert chief["steps"] == other["steps"] == EPOCHS * SAMPLES // BATCH
    assert chief["history"] == other["history"]  # losses reduced over both workers
    assert chief["final_loss"] == other["final_loss"]
    assert chief["integrity"]["ok"] and chief["integrity"] == other["integrity"]

    original, trained, copy = (_weights(folder / "model.keras"), _weights(out),
                               _weights(folder / "trained.worker-1.keras"))
    for key, value in trained.items():
        assert np.array_equal(value, copy[key]), key  # synchronous: the same bits
    for key in ("a:kernel", "a:bias"):
        assert np.array_equal(trained[key], original[key]), key  # frozen: bit-identical
    for key in ("out:kernel", "bn:moving_mean", "bn:moving_variance"):
        assert not np.array_equal(trained[key], original[key]), key

    # the oracle: the same run in one process (the same global batches and order)
    document = open_document(folder / "model.keras")
    apply_plan(document, Plan.from_dict({"freezestudio_plan": 1,
                                         "trainable": [{"match": "a", "value": False}]}))
    norms = _Norms()
    single = Trainer(document, TrainingData("arrays", Split([x], [y])), TrainingConfig(
        epochs=EPOCHS, batch_size=BATCH, seed=SEED, optimizer="sgd", learning_rate=0.1,
        cache_features="off")).run(norms)
    assert single.status == COMPLETED
    assert chief["final_loss"] == pytest.approx(single.final_loss, rel=1e-4)
    # every step's loss and per-layer gradient norms (the chief's CSV): the global batch's
    steps = _csv_steps(folder / "steps.csv")
    assert len(steps) == len(norms.steps) and len(steps[0]) == 1 + 3  # bn, c, out
    np.testing.assert_allclose(steps, norms.steps, rtol=1e-4, atol=1e-7)
    # every replica's BatchNorm saw half of each batch: the moving mean (the mean of the
    # halves' means) is the global one; the moving variance (the mean of the halves'
    # variances) is not
    for weight in document.weights:
        if weight.id != "bn:moving_variance":
            np.testing.assert_allclose(trained[weight.id], weight.variable.numpy(),
                                       rtol=1e-4, atol=1e-6, err_msg=weight.id)
    print(f"two workers on loopback, cached: {elapsed:.1f} s")


def test_a_worker_that_cannot_reach_the_others_fails_in_time_with_one_line(problem):
    folder, _, _ = problem
    addresses = [f"127.0.0.1:{port}" for port in _free_ports(2)]
    args = ["train", folder / "model.keras", "--data", folder / "data.npz",
            "-o", folder / "alone.keras", "--multi-worker", "--cluster-timeout", "3"]
    start = time.monotonic()
    [(code, stdout, stderr)] = _finish([_start(args, _tf_config(addresses, 1))], 50)
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert code == 2, stderr[-2000:]
    assert "Traceback" not in stderr
    assert lines[-1].startswith("freezestudio: error: --multi-worker: worker 1 "
                                f"({addresses[1]}, not the chief) of 2 workers could not "
                                "reach the other workers within 3 s"), stderr[-2000:]
    assert not (folder / "alone.keras").exists()
    assert not (folder / "alone.worker-1.keras").exists()
    print(f"unreachable worker: failed after {time.monotonic() - start:.1f} s")


@pytest.mark.parametrize("text, fragment", [
    (None, "--multi-worker needs the cluster in the TF_CONFIG variable"),
    ("{not json", "TF_CONFIG is not valid JSON"),
    ('{"cluster": {"worker": ["a:1"]}}', 'TF_CONFIG needs a "cluster" and a "task" object'),
    ('{"cluster": {"worker": ["nohost"]}, "task": {"type": "worker", "index": 0}}',
     "TF_CONFIG cluster job 'worker' must be a list of \"host:port\" addresses"),
    ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 1}}',
     "TF_CONFIG task index 1 is out of range: the 'worker' job has 1 address(es)"),
    ('{"cluster": {"worker": ["a:1"], "ps": ["b:2"]}, "task": {"type": "ps", "index": 0}}',
     'TF_CONFIG task type "ps" cannot train with --multi-worker'),
    ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "chief", "index": 0}}',
     "TF_CONFIG task type 'chief' is not a job of its cluster (worker)"),
])
def test_bad_tf_config_is_a_one_line_user_error(text, fragment):
    with pytest.raises(UserError) as caught:
        read_tf_config({} if text is None else {"TF_CONFIG": text})
    assert str(caught.value).startswith(fragment), str(caught.value)
    assert "\n" not in str(caught.value)


def test_the_chief_and_the_other_workers_save_apart():
    chief = read_tf_config({"TF_CONFIG": json.dumps({
        "cluster": {"chief": ["c:1"], "worker": ["w:2", "w:3"]},
        "task": {"type": "chief", "index": 0}})})
    worker0 = read_tf_config({"TF_CONFIG": json.dumps({
        "cluster": {"chief": ["c:1"], "worker": ["w:2", "w:3"]},
        "task": {"type": "worker", "index": 0}})})
    assert chief.is_chief and not worker0.is_chief and chief.workers == 3
    assert output_path("out/m.keras", chief).as_posix() == "out/m.keras"
    assert output_path("out/m.keras", worker0).as_posix() == "out/m.worker-0.keras"


def test_options_that_cannot_run_distributed_exit_2_before_joining(problem, tmp_path):
    folder, _, _ = problem
    from cli_runner import assert_user_error, run_many

    base = ["train", folder / "model.keras", "--data", folder / "data.npz", "-o",
            tmp_path / "o.keras", "--multi-worker"]
    runs = run_many([base + ["--device", "cpu"], base + ["--jit-compile", "on"],
                     base + ["--cache-features", "on"], base])
    for run, option in zip(runs, ("--device", "--jit-compile on"), strict=False):
        assert_user_error(run, f"{option} cannot run with --multi-worker")
    for run in runs[2:]:  # feature caching runs distributed: on to TF_CONFIG
        assert_user_error(run, "--multi-worker needs the cluster in the TF_CONFIG variable")
