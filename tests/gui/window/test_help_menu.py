"""Help > About (versions, the devices TensorFlow sees), Help > Open Log Folder and the
application icon, on the real window."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from PySide6 import __version__ as pyside_version
from PySide6.QtCore import QObject, QUrl, Slot, qVersion
from PySide6.QtGui import QDesktopServices, QImage

import freezestudio
from freezestudio.gui.window import help_menu
from freezestudio.resources import ICON_SIZES, icon_png

REPO = Path(__file__).resolve().parents[3]


def test_about_lists_the_versions_and_the_devices(qtbot, window):
    import keras
    import tensorflow as tf

    window.actions.about.trigger()
    dialog = window.about_dialog
    assert dialog.isVisible()
    qtbot.waitUntil(lambda: dialog.devices != help_menu.DEVICES_PENDING, timeout=60_000)
    assert dialog.versions == {"FreezeStudio": freezestudio.__version__,
                               "TensorFlow": tf.__version__, "Keras": keras.__version__,
                               "PySide6": pyside_version, "Qt": qVersion()}
    expected = ["/" + d.name.split("device:")[-1] for d in tf.config.list_logical_devices()
                if d.device_type in ("CPU", "GPU")]
    assert dialog.devices == ", ".join(expected)
    text = dialog.label.text()
    for value in (*dialog.versions.values(), *expected):
        assert value in text
    window.actions.about.trigger()  # a second time: the same box
    assert window.about_dialog is dialog


def test_the_about_box_itself_does_not_import_tensorflow(tmp_path):
    script = ("import sys\nfrom freezestudio.gui.app import create_application\n"
              "app = create_application()\nfrom freezestudio.gui.window.help_menu import "
              "AboutDialog\nbox = AboutDialog()\nprint('tensorflow' in sys.modules, "
              "'TensorFlow' in box.label.text())\n")
    env = dict(os.environ, XDG_CONFIG_HOME=str(tmp_path), QT_QPA_PLATFORM="offscreen")
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["False", "True"]


class _UrlCatcher(QObject):
    def __init__(self):
        super().__init__()
        self.urls = []

    @Slot(QUrl)
    def open(self, url):
        self.urls.append(url)


def test_open_log_folder_shows_the_log_location(window, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    catcher = _UrlCatcher()
    QDesktopServices.setUrlHandler("file", catcher, "open")
    try:
        window.actions.open_log_folder.trigger()
    finally:
        QDesktopServices.unsetUrlHandler("file")
    folder = tmp_path / "state" / "freezestudio" / "log"
    assert [u.toLocalFile() for u in catcher.urls] == [str(folder)]
    assert folder.is_dir()
    assert window.actions.open_log_folder in window.actions.help_menu.actions()


def test_the_window_icon_is_the_packaged_icon(window):
    icon = window.windowIcon()
    assert sorted(s.width() for s in icon.availableSizes()) == sorted(ICON_SIZES)
    shown = icon.pixmap(64, 64).toImage().convertToFormat(QImage.Format.Format_ARGB32_Premultiplied)
    packaged = QImage(str(icon_png(64))).convertToFormat(QImage.Format.Format_ARGB32_Premultiplied)
    assert shown == packaged


def test_an_error_in_a_slot_goes_to_the_log_and_a_dialog(window, answers, tmp_path,
                                                         monkeypatch, capsys):
    from freezestudio.gui.app import _make_excepthook

    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    hook = _make_excepthook(window)
    try:
        {}["missing"]
    except KeyError:
        hook(*sys.exc_info())
    log = tmp_path / "state" / "freezestudio" / "log" / "freezestudio.log"
    assert "KeyError: 'missing'" in log.read_text()
    assert answers["errors"] == [f"KeyError: 'missing'\n\nThe details were written to {log}."]
    assert capsys.readouterr().err.strip().endswith(f"(details in {log})")
