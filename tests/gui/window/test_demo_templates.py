"""The bundled demos open as read-only templates: Save asks for a place outside the package
(the user's documents folder, the demo's name), nothing is written into DEMO_DIR, and the
Export dialog does not default into it either."""

from __future__ import annotations

from pathlib import Path

import pytest

from freezestudio.gui.common import dialogs
from freezestudio.gui.window import file_flows
from freezestudio.resources import DEMO_DIR

CNN = DEMO_DIR / "cnn_transfer.keras"


def demo_files() -> dict[str, tuple[bytes, int]]:
    """Every file of the demo folder: its bytes and its mtime (ns)."""
    return {str(p.relative_to(DEMO_DIR)): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(DEMO_DIR.rglob("*")) if p.is_file()}


@pytest.fixture
def demo_window(qtbot, window, open_and_wait, monkeypatch, tmp_path):
    """The window with the CNN demo open and an edit made; the user's documents folder is
    `tmp_path / "Documents"`; save dialogs record what they suggest."""
    documents = tmp_path / "Documents"
    documents.mkdir()
    monkeypatch.setattr(file_flows, "user_folder", lambda: documents)
    before = demo_files()
    assert open_and_wait(qtbot, window, CNN)
    window.editor.set_trainable([window.document.layer("head_dense")], False)
    window.suggested = []
    window.documents = documents
    yield window
    assert demo_files() == before, "the bundled demos were written to"


def answer_save(monkeypatch, window, path):
    def get_save_path(parent, suggested, directory_only):
        window.suggested.append(suggested)
        return str(path) if path else None

    monkeypatch.setattr(dialogs, "get_save_path", get_save_path)


def test_ctrl_s_on_a_demo_asks_for_a_place_in_the_users_documents(qtbot, demo_window,
                                                                   monkeypatch):
    window = demo_window
    target = window.documents / "my_cnn.keras"
    answer_save(monkeypatch, window, target)
    assert window.actions.save.shortcut().toString() == "Ctrl+S"
    with qtbot.waitSignal(window.saved, timeout=60_000):
        window.actions.save.trigger()
    assert window.suggested == [str(window.documents / "cnn_transfer.keras")]
    assert target.is_file() and window.document.source_path == target
    assert not window.isWindowModified()
    window.editor.set_trainable([window.document.layer("head_out")], False)
    with qtbot.waitSignal(window.saved, timeout=60_000):  # the copy is the user's: in place
        window.actions.save.trigger()
    assert len(window.suggested) == 1


def test_cancelling_the_demos_save_as_writes_nothing(demo_window, monkeypatch):
    window = demo_window
    answer_save(monkeypatch, window, None)
    assert window.save() is False
    assert window.isWindowModified() and window.suggested


def test_a_place_inside_the_demos_is_refused(qtbot, demo_window, monkeypatch, answers):
    window = demo_window
    answer_save(monkeypatch, window, CNN)
    assert window.save() is False
    answer_save(monkeypatch, window, DEMO_DIR / "other.keras")
    assert window.save_as() is False
    assert not window.save_portable_copy()
    assert window.suggested[-1] == str(window.documents / "cnn_transfer_portable.keras")
    assert len(answers["errors"]) == 3 and "read-only templates" in answers["errors"][0]
    assert not (DEMO_DIR / "other.keras").exists() and window.isWindowModified()
    qtbot.wait(50)
    assert not window._saving


def test_plan_and_folders_do_not_point_into_the_demos(demo_window, settings, answers):
    window = demo_window
    assert Path(settings.last_directory() or "/").resolve() != DEMO_DIR.resolve()
    answers["plan_path"] = None
    window.save_plan_file()
    answers["plan_path"] = str(DEMO_DIR / "cnn_plan.json")
    window.save_plan_file()
    assert not (DEMO_DIR / "cnn_plan.json").exists()
    assert "read-only templates" in answers["errors"][-1]


def test_the_export_dialogs_default_folder_is_outside_the_demos(qtbot, demo_window):
    dialog = demo_window.export.open_dialog(modal=False)
    try:
        destination = Path(dialog.destination.text())
        assert destination.parent != DEMO_DIR and not file_flows.is_bundled_demo(destination)
        assert destination.name.startswith("cnn_transfer_export")
    finally:
        dialog.reject()


def test_is_bundled_demo_and_the_default_user_folder():
    assert file_flows.is_bundled_demo(CNN)
    assert file_flows.is_bundled_demo(DEMO_DIR / "sub" / ".." / "x.keras")
    assert not file_flows.is_bundled_demo(DEMO_DIR.parent / "x.keras")
    assert not file_flows.is_bundled_demo(Path.home() / "cnn_transfer.keras")
    assert not file_flows.is_bundled_demo(file_flows.user_folder())
