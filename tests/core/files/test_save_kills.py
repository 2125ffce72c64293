"""Saving under faults: a save SIGKILLed at any moment leaves the old file or the new one.

A subprocess opens a real model and saves it over and over, each time with a kernel filled
with the save's number, announcing each save before and after it; it is SIGKILLed after a
seeded random delay. The target must then load (FreezeStudio and plain Keras) and hold the
number of the save in flight or of the one before, and the next save must remove whatever
staging folder the kill left.
"""

import os
import random
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import keras
import model_builders as mb
import numpy as np
import pytest

from freezestudio.core.files import atomic
from freezestudio.core.files.loading import open_document
from freezestudio.core.files.saving import save_document

CHILD = """
import sys
import numpy as np
from freezestudio.core.files.loading import open_document
from freezestudio.core.files.saving import save_document
document = open_document(sys.argv[1])
kernel = document.weight("dense:kernel").variable
print("ready", flush=True)
number = 0
while True:
    number += 1
    kernel.assign(np.full(kernel.shape, number, dtype="float32"))
    print("saving", number, flush=True)
    save_document(document, sys.argv[1])
    print("saved", number, flush=True)
"""

RUNS = [("keras", 2), ("h5", 2),  # (format, seeded kill points): one subprocess (TF start) each
        pytest.param("keras", 8, marks=pytest.mark.slow),
        pytest.param("h5", 8, marks=pytest.mark.slow)]
START_BOUND = 60.0  # seconds for a child to import TensorFlow and open the model


def _start(target: Path) -> subprocess.Popen:
    root = Path(__file__).resolve().parents[3]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), str(root / "tests")]),
           "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    return subprocess.Popen([sys.executable, "-c", CHILD, str(target)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)


def _wait_ready(child: subprocess.Popen) -> None:
    deadline = time.monotonic() + START_BOUND
    while time.monotonic() < deadline:
        ready, _, _ = select.select([child.stdout], [], [], deadline - time.monotonic())
        if ready and child.stdout.readline().strip() == "ready":
            return
        if child.poll() is not None:
            break
    child.kill()
    pytest.fail("the saving subprocess did not start")


def _kernel_number(values: np.ndarray) -> int:
    number = float(values.flat[0])
    assert np.all(values == number), "a kernel mixed from two saves"
    return int(number)


@pytest.mark.parametrize(("ext", "kills"), RUNS)
def test_sigkill_during_saves_leaves_old_or_new_and_next_save_cleans(tmp_path, ext, kills):
    target = tmp_path / f"model.{ext}"
    document = open_document(_saved_mlp(tmp_path, ext))
    save_document(document, target)  # the "old" file: kernel as built (save number 0)
    old_kernel = document.weight("dense:kernel").variable.numpy()
    rng = random.Random(f"save-kills-{ext}-{kills}")
    litter, numbers = 0, []
    for _ in range(kills):
        child = _start(target)
        _wait_ready(child)
        time.sleep(rng.uniform(0.0, 2.5))
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=10)
        lines = child.stdout.read().split()
        child.stdout.close()
        in_flight = max([int(n) for word, n in zip(lines, lines[1:], strict=False)
                         if word == "saving"], default=0)
        # The file opens, in FreezeStudio and in plain Keras, and is one whole save.
        reopened = open_document(target)
        plain = keras.saving.load_model(target, compile=False)
        kernel = reopened.weight("dense:kernel").variable.numpy()
        number = _kernel_number(kernel)
        numbers.append(number)
        assert number in (in_flight - 1, in_flight) or (number == 0 and in_flight <= 1)
        if number == 0:
            np.testing.assert_array_equal(kernel, old_kernel)
        np.testing.assert_array_equal(plain.get_layer("dense").kernel.numpy(), kernel)
        leftover = atomic.staging_folders(target)
        litter += bool(leftover)
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
            [target.name, f"src.{ext}", *(p.name for p in leftover)])
    # The next save removes what the kills left, and only that.
    save_document(open_document(target), target)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([target.name, f"src.{ext}"])
    print(f"{kills} kills of {ext} saves (file held save number {numbers}), "
          f"{litter} left a staging folder")


def _saved_mlp(folder: Path, ext: str) -> Path:
    path = folder / f"src.{ext}"
    mb.mlp().save(path)
    return path


def test_next_save_keeps_a_live_processes_staging_folder(tmp_path):
    """Another process's save in flight is not swept away; a dead one's is."""
    target = tmp_path / "model.keras"
    document = open_document(_saved_mlp(tmp_path, "keras"))
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        live = tmp_path / f".model.keras{atomic.STAGING_MARK}{sleeper.pid}-abc"
        dead_pid = _dead_pid()
        dead = tmp_path / f".model.keras{atomic.STAGING_MARK}{dead_pid}-def"
        for folder in (live, dead):
            folder.mkdir()
            (folder / "model.keras").write_bytes(b"half a zip")
        save_document(document, target)
        assert atomic.staging_folders(target) == [live]
    finally:
        sleeper.kill()
        sleeper.wait()
    save_document(document, target)
    assert atomic.staging_folders(target) == []


def test_folder_swap_stranded_by_a_kill_is_put_back(tmp_path):
    """The fallback folder swap (two renames) killed between them: the next save restores the
    old folder before anything else."""
    target = tmp_path / "saved"
    staging = tmp_path / f".saved{atomic.STAGING_MARK}{_dead_pid()}-xyz"
    (staging / "old").mkdir(parents=True)
    (staging / "old" / "saved_model.pb").write_bytes(b"old")
    assert atomic.clean_stale(target) == [staging]
    assert (target / "saved_model.pb").read_bytes() == b"old"
    assert atomic.staging_folders(target) == []


def test_folder_replacement_is_a_swap(tmp_path):
    target = tmp_path / "saved"
    target.mkdir()
    (target / "a").write_text("old")

    def write(tmp):
        tmp.mkdir()
        (tmp / "a").write_text("new")

    atomic.replace_directory(target, write)
    assert (target / "a").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["saved"]


def _dead_pid() -> int:
    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished.wait()
    return finished.pid
