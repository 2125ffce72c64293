"""Launching the real app in a subprocess: screenshot smoke test, no display, fast start."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def run_app(args, tmp_path, env_changes=None, timeout=180):
    env = dict(os.environ, XDG_CONFIG_HOME=str(tmp_path / "config"), TF_CPP_MIN_LOG_LEVEL="2")
    env.update(env_changes or {})
    for key in [k for k, v in env.items() if v is None]:
        del env[key]
    return subprocess.run([sys.executable, "-m", "freezestudio", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return struct.unpack(">II", data[16:24])


def test_screenshot_of_a_loaded_model(tmp_path, model_files):
    out = tmp_path / "shot.png"
    result = run_app(["--screenshot", str(out), str(model_files["nested"])], tmp_path,
                     {"QT_QPA_PLATFORM": "offscreen"})
    assert result.returncode == 0, result.stderr
    width, height = png_size(out)
    assert width >= 800 and height >= 500
    assert out.stat().st_size > 20_000  # a real rendering, not a blank image


def test_screenshot_of_a_bad_file_fails_with_one_line(tmp_path, model_files):
    out = tmp_path / "shot.png"
    result = run_app(["--screenshot", str(out), str(model_files["bad"])], tmp_path,
                     {"QT_QPA_PLATFORM": "offscreen"})
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("freezestudio: error:")
    assert "Traceback" not in result.stderr


def test_no_display_says_so_instead_of_aborting(tmp_path):
    result = run_app([], tmp_path, {"QT_QPA_PLATFORM": None, "DISPLAY": None,
                                    "WAYLAND_DISPLAY": None}, timeout=60)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "QT_QPA_PLATFORM=offscreen" in lines[0] and "freezestudio inspect" in lines[0]


STARTUP = """
import sys, time
start, cpu = time.perf_counter(), time.thread_time()
from freezestudio.gui.app import create_application
app = create_application()
from freezestudio.gui.window.main_window import MainWindow
window = MainWindow()
window.show()
app.processEvents()
shown, shown_cpu = time.perf_counter() - start, time.thread_time() - cpu
ready = []
window.tf_ready.connect(lambda ok: (ready.append(time.perf_counter() - start), app.quit()))
app.exec()
window.close()
print(f"{shown:.3f} {shown_cpu:.3f} {ready[0]:.3f} {'tensorflow' in sys.modules}")
"""


def test_window_shows_before_tensorflow_is_imported(tmp_path):
    env = dict(os.environ, XDG_CONFIG_HOME=str(tmp_path / "config"), QT_QPA_PLATFORM="offscreen")
    result = subprocess.run([sys.executable, "-c", STARTUP], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    shown, shown_cpu, tf_ready_at, tf_later = result.stdout.split()
    # the import runs on a worker thread from the window's construction on, so
    # "tensorflow" may already be in sys.modules at show; what matters is that the window
    # did not wait for it: it showed before the import had finished
    assert float(shown) < float(tf_ready_at), "the window waited for TensorFlow's import"
    assert tf_later == "True", "TensorFlow was not imported in the background"
    # target: < 1 s (about 0.45 s here); CPU time of the GUI thread is what we control,
    # wall time also counts other processes on a loaded machine
    assert float(shown_cpu) < 1.0, f"showing the window took {shown_cpu} s of CPU"
    assert float(shown) < 2.0, f"window took {shown} s to show"
