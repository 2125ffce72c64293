"""The wheel carries everything the app needs: built from the package's files alone,
installed into a fresh virtualenv and run from outside the checkout.

Offline and quick: the wheel is built without build isolation (the test extra pins the
build backend) and installed without dependencies. A virtualenv made from a virtualenv
does not see the outer one's packages even with `--system-site-packages` (that flag means
the base interpreter's), so the fresh one reaches TensorFlow through a `.pth` path line
to this interpreter's site-packages; a path line runs no code, so the outer environment's
editable install of the checkout stays out, and `freezestudio` must come from the wheel.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

import freezestudio
from freezestudio.resources import APP_ID, ICON_SIZES

REPO = Path(__file__).resolve().parents[1]
SOURCES = ("pyproject.toml", "README.md", "freezestudio")
"""What a wheel is built from (a copy, so the checkout gets no build/ or egg-info)."""


def _run(command, cwd, env, timeout=300) -> subprocess.CompletedProcess:
    done = subprocess.run([str(c) for c in command], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)
    assert done.returncode == 0, (command, done.stdout[-2000:], done.stderr[-3000:])
    return done


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(the built wheel, the fresh venv's bin folder, an environment without the checkout)."""
    root = tmp_path_factory.mktemp("wheel")
    source = root / "source"
    source.mkdir()
    for name in SOURCES:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, source / name,
                            ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copyfile(REPO / name, source / name)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(QT_QPA_PLATFORM="offscreen", TF_CPP_MIN_LOG_LEVEL="2",
               XDG_STATE_HOME=str(root / "state"), PIP_DISABLE_PIP_VERSION_CHECK="1")
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
          "--no-index", "-q", "-w", root / "dist", source], cwd=root, env=env)
    (wheel,) = (root / "dist").glob("freezestudio-*.whl")
    target = root / "venv"
    venv.EnvBuilder(system_site_packages=True, with_pip=False).create(target)
    bin_dir = target / ("Scripts" if os.name == "nt" else "bin")
    python = bin_dir / "python"
    purelib = _run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                   cwd=root, env=env).stdout.strip()
    Path(purelib, "outer_site_packages.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run([sys.executable, "-m", "pip", "--python", python, "install", "--no-deps",
          "--no-index", "-q", wheel], cwd=root, env=env)
    return wheel, bin_dir, env, root


def test_the_wheel_holds_the_demos_icons_and_desktop_files(installed):
    wheel = installed[0]
    names = set(zipfile.ZipFile(wheel).namelist())
    resources = Path(freezestudio.__file__).parent / "resources"
    shipped = {p.relative_to(resources.parent.parent).as_posix() for p in resources.rglob("*")
               if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"}
    assert shipped - names == set()
    assert f"freezestudio/resources/desktop/{APP_ID}.desktop" in names
    assert {f"freezestudio/resources/icons/freezestudio-{n}.png" for n in ICON_SIZES} <= names
    metadata = zipfile.ZipFile(wheel).read(
        f"freezestudio-{freezestudio.__version__}.dist-info/METADATA").decode()
    assert f"\nVersion: {freezestudio.__version__}\n" in metadata


def test_the_installed_app_runs_from_outside_the_checkout(installed):
    _wheel, bin_dir, env, root = installed
    python, command = bin_dir / "python", bin_dir / "freezestudio"
    where = _run([python, "-c", "import freezestudio, freezestudio.resources as r; "
                  "print(freezestudio.__file__); print(r.demo_file('cnn_transfer.keras'))"],
                 cwd=root, env=env).stdout.split()
    assert all(Path(p).is_relative_to(bin_dir.parent) for p in where), where
    demo = Path(where[1])

    version = _run([command, "--version"], cwd=root, env=env)
    assert version.stdout.strip() == f"freezestudio {freezestudio.__version__}"

    shot = root / "shot.png"
    screenshot = subprocess.Popen([command, demo, "--screenshot", shot], cwd=root, env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    inspected = json.loads(_run([command, "inspect", demo, "--json"], cwd=root,
                                env=env).stdout.splitlines()[-1])  # meanwhile, on 2 cores
    import keras

    model = keras.saving.load_model(demo, compile=False)
    assert inspected["totals"]["params"] == model.count_params()
    assert inspected["totals"]["trainable_params"] == sum(
        int(w.numpy().size) for w in model.trainable_weights)

    _out, errors = screenshot.communicate(timeout=300)
    assert screenshot.returncode == 0, errors[-3000:]
    from PySide6.QtGui import QImage

    image = QImage(str(shot))
    assert not image.isNull() and image.width() > 600 and image.height() > 400
