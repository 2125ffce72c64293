"""GUI test fixtures: offscreen Qt, isolated settings, small real Keras models on disk."""

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


def _nested_model(keras):
    """image -> backbone(conv, bn, relu, pool) -> head_dense -> head_dropout -> out."""
    inputs = keras.Input((8, 8, 3), name="image")
    x = keras.layers.Conv2D(4, 3, name="conv", padding="same")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.ReLU(name="relu")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    backbone = keras.Model(inputs, x, name="backbone")
    outer_in = keras.Input((8, 8, 3), name="input")
    y = backbone(outer_in)
    y = keras.layers.Dense(5, name="head_dense")(y)
    y = keras.layers.Dropout(0.1, name="head_dropout")(y)
    out = keras.layers.Dense(2, name="out")(y)
    return keras.Model(outer_in, out, name="nested")


def _shared_model(keras):
    """A Dense layer called twice (two insertion points) and an embedding branch."""
    a = keras.Input((4,), name="a")
    b = keras.Input((4,), name="b")
    shared = keras.layers.Dense(3, name="shared")
    merged = keras.layers.Concatenate(name="concat")([shared(a), shared(b)])
    out = keras.layers.Dense(1, name="out")(merged)
    return keras.Model([a, b], out, name="shared_model")


def _lambda_model(keras):
    inputs = keras.Input((3,), name="x")
    x = keras.layers.Lambda(lambda t: t * 2.0, name="double")(inputs)
    return keras.Model(inputs, keras.layers.Dense(1, name="d")(x), name="with_lambda")


CUSTOM_MODULE = '''
import keras


@keras.saving.register_keras_serializable(package="guitest")
class Scale(keras.layers.Layer):
    def build(self, input_shape):
        self.factor = self.add_weight(shape=(), initializer="ones", name="factor")

    def call(self, x):
        return x * self.factor
'''


@pytest.fixture(scope="session")
def model_files(keras, tmp_path_factory):
    """Paths of small saved models: nested, shared, lambda, custom (+ its module), bad."""
    root = tmp_path_factory.mktemp("models")
    files = {}
    for name, build in (("nested", _nested_model), ("shared", _shared_model),
                        ("lambda", _lambda_model)):
        path = root / f"{name}.keras"
        build(keras).save(path)
        files[name] = path
    nested = keras.saving.load_model(files["nested"], compile=False)
    nested.save(root / "nested.h5")
    files["nested_h5"] = root / "nested.h5"
    module = root / "custom_layer.py"
    module.write_text(CUSTOM_MODULE)
    namespace: dict = {}
    exec(compile(CUSTOM_MODULE, str(module), "exec"), namespace)  # noqa: S102 - our own code
    inputs = keras.Input((2,), name="x")
    custom = keras.Model(inputs, namespace["Scale"](name="scale")(inputs), name="custom")
    custom.save(root / "custom.keras")
    files["custom"] = root / "custom.keras"
    files["custom_module"] = module
    # make the registered class unknown again, as it is in a fresh process
    keras.saving.get_custom_objects().pop("guitest>Scale", None)
    bad = root / "broken.keras"
    bad.write_text("this is not a model")
    files["bad"] = bad
    return files


@pytest.fixture
def answers(monkeypatch):
    """Replaces every modal dialog: records errors, answers questions from this dict."""
    state = {"errors": [], "trust": False, "module": None, "unsaved": dialogs.DISCARD,
             "save_path": None, "plan_path": None, "open_path": None, "asked": []}

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
