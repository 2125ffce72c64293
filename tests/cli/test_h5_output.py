"""Writing `.h5` on purpose: Keras's "HDF5 ... considered legacy" warning stays out of the
output of `apply` and `train` (the real commands, in subprocesses), and only that warning."""

import logging

import keras
import model_builders as mb
import numpy as np
from cli_runner import run_many

from freezestudio.core.files.loading import open_document
from freezestudio.core.files.saving import save_document
from freezestudio.resources import DEMO_DIR

LEGACY = "considered legacy"


def test_apply_and_train_to_h5_print_no_legacy_warning(tmp_path):
    data = tmp_path / "cnn.npz"
    with np.load(DEMO_DIR / "cnn_task_b.npz") as npz:
        np.savez(data, x=npz["x"][:64], y=npz["y"][:64])
    source = DEMO_DIR / "cnn_transfer.keras"
    applied, trained = run_many([
        ["apply", source, "--freeze", "conv_base", "-o", tmp_path / "applied.h5"],
        ["train", source, "--data", data, "--epochs", "1", "--batch-size", "32",
         "--validation-split", "0", "-o", tmp_path / "trained.h5"],
    ])
    for run, name in ((applied, "applied.h5"), (trained, "trained.h5")):
        assert run.returncode == 0, run.stderr[-2000:]
        output = run.stdout + run.stderr
        assert LEGACY not in output and "HDF5" not in output, output[-2000:]
        assert f"saved {tmp_path / name}" in run.stdout
    for name in ("applied.h5", "trained.h5"):
        keras.saving.load_model(tmp_path / name)  # and the files are real .h5 models


def test_only_the_legacy_warning_is_dropped_and_only_during_the_save(tmp_path, caplog):
    document = open_document(_saved(tmp_path))
    with caplog.at_level(logging.WARNING, logger="absl"):
        document.model.save(tmp_path / "plain.h5")  # Keras itself: the warning is there
        assert any(LEGACY in r.getMessage() for r in caplog.records)
        caplog.clear()
        save_document(document, tmp_path / "ours.h5")
        assert not any(LEGACY in r.getMessage() for r in caplog.records)
        logging.getLogger("absl").warning("another absl warning")
        document.model.save(tmp_path / "plain_again.h5")  # the filter is gone after
    messages = [r.getMessage() for r in caplog.records]
    assert "another absl warning" in messages
    assert any(LEGACY in m for m in messages)


def _saved(folder):
    path = folder / "mlp.keras"
    mb.mlp().save(path)
    return path
