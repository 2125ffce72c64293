"""GUI test fixtures: offscreen Qt, isolated settings, small real Keras models on disk
(built by tests/model_builders.py)."""

from __future__ import annotations

import os
import tempfile

os.environ["QT_QPA_PLATFORM"] = "offscreen"  # before Qt is imported anywhere
os.environ["XDG_CONFIG_HOME"] = tempfile.mkdtemp(prefix="freezestudio-test-config-")

import pytest
from PySide6.QtCore import QSettings

from freezestudio.gui.common import dialogs
from freezestudio.gui.window.main_window import MainWindow
from freezestudio.gui.window.settings import Settings

LOAD_TIMEOUT_MS = 60_000


@pytest.fixture(autouse=True)
def gui_thread_garbage_collection(qapp):
    """As in the app: garbage (Qt objects of earlier tests included) is collected in the GUI
    thread only, never in a loader or training worker (which crashes Qt)."""
    from freezestudio.gui.background.gc_guard import MainThreadGarbageCollector

    collector = MainThreadGarbageCollector()
    yield
    collector.stop()


@pytest.fixture(scope="session")
def keras():
    """Keras, imported once in the main thread (tests build models with it)."""
    from freezestudio.core.tf_import import import_tensorflow_quietly

    import_tensorflow_quietly()
    import keras as keras_module

    return keras_module


@pytest.fixture(scope="session")
def model_files(keras, tmp_path_factory):
    """Paths of small saved models: nested, shared, lambda, custom (+ its module), bad."""
    import model_builders as mb  # here: TensorFlow is imported quietly first (`keras`)

    root = tmp_path_factory.mktemp("models")
    files = {}
    for name, build in (("nested", mb.functional_with_backbone),
                        ("shared", mb.shared_two_inputs_one_output),
                        ("lambda", mb.doubling_lambda)):
        path = root / f"{name}.keras"
        build().save(path)
        files[name] = path
    nested = keras.saving.load_model(files["nested"], compile=False)
    nested.save(root / "nested.h5")
    files["nested_h5"] = root / "nested.h5"
    files["custom"], files["custom_module"] = mb.make_custom_scale_model(root)
    bad = root / "broken.keras"
    bad.write_text("this is not a model")
    files["bad"] = bad
    return files


@pytest.fixture(scope="session")
def attention_file(keras, tmp_path_factory):
    """A saved MultiHeadAttention model (`model_builders.attention_model`): LoRA tests."""
    import model_builders as mb

    path = tmp_path_factory.mktemp("lora") / "attention.keras"
    mb.attention_model().save(path)
    return path


@pytest.fixture
def answers(monkeypatch):
    """Replaces every modal dialog: records errors, answers questions from this dict."""
    state = {"errors": [], "trust": False, "module": None, "unsaved": dialogs.DISCARD,
             "save_path": None, "merge_lora": False, "plan_path": None, "open_path": None,
             "asked": []}

    def show_error(parent, title, message, details=""):
        state["errors"].append(message)

    def ask(name, value):
        def answer(*args, **kwargs):
            state["asked"].append(name)
            return state[value]
        return answer

    monkeypatch.setattr(dialogs, "show_error", show_error)
    monkeypatch.setattr(dialogs, "show_info", lambda *a, **k: None)
    monkeypatch.setattr(dialogs, "ask_trust", ask("trust", "trust"))
    monkeypatch.setattr(dialogs, "ask_custom_module", ask("module", "module"))
    monkeypatch.setattr(dialogs, "ask_unsaved", ask("unsaved", "unsaved"))
    monkeypatch.setattr(dialogs, "get_save_path", ask("save_path", "save_path"))
    monkeypatch.setattr(dialogs, "ask_merge_lora", ask("merge_lora", "merge_lora"))
    monkeypatch.setattr(dialogs, "get_plan_path", ask("plan_path", "plan_path"))
    monkeypatch.setattr(dialogs, "get_open_path", ask("open_path", "open_path"))
    monkeypatch.setattr(dialogs, "get_open_directory", ask("open_path", "open_path"))
    return state


@pytest.fixture
def settings(tmp_path):
    return Settings(QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat))


@pytest.fixture
def window(qtbot, keras, settings, answers):
    """A main window with test settings; checks its worker thread stopped at teardown."""
    win = MainWindow(settings=settings)
    qtbot.addWidget(win)
    win.show()
    yield win
    answers["unsaved"] = dialogs.DISCARD
    win.close()
    assert win.runner.thread.isFinished(), "the worker QThread is still running"


def _open_and_wait(qtbot, window, path, **kwargs) -> bool:
    with qtbot.waitSignal(window.load_finished, timeout=LOAD_TIMEOUT_MS) as blocker:
        window.open_path(path, **kwargs)
    return blocker.args[0]


@pytest.fixture
def open_and_wait():
    """`open_and_wait(qtbot, window, path)`: opens through the GUI (worker thread), waits,
    returns whether a document is shown."""
    return _open_and_wait


@pytest.fixture
def opened(qtbot, window, model_files):
    """The window with the nested model open."""
    assert _open_and_wait(qtbot, window, model_files["nested"])
    return window
