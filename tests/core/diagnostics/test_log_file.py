"""The log file of unexpected failures: the platform location, entries appended, rotation,
the temporary folder when the location cannot be written."""

from __future__ import annotations

import sys
import tempfile

import pytest

import freezestudio
from freezestudio.core.diagnostics import log_file


@pytest.fixture
def state_home(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    return tmp_path / "state"


@pytest.mark.skipif(sys.platform in ("win32", "darwin"), reason="the freedesktop location")
def test_the_log_lives_in_the_xdg_state_home(state_home, monkeypatch, tmp_path):
    assert log_file.log_path() == state_home / "freezestudio" / "log" / "freezestudio.log"
    monkeypatch.delenv("XDG_STATE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert log_file.log_dir() == tmp_path / "home" / ".local" / "state" / "freezestudio" / "log"


def test_failures_are_appended_with_a_header(state_home):
    for number in (1, 2):
        try:
            raise RuntimeError(f"failure {number}")
        except RuntimeError:
            import traceback

            written = log_file.record_failure(traceback.format_exc(), f"run {number}")
    assert written == log_file.log_path()
    text = written.read_text()
    assert text.count(f"FreezeStudio {freezestudio.__version__} pid") == 2
    assert "run 1\nTraceback" in text and "RuntimeError: failure 2" in text
    assert text.index("failure 1") < text.index("failure 2")


def test_a_full_log_moves_aside_once(state_home, monkeypatch):
    monkeypatch.setattr(log_file, "MAX_BYTES", 100)
    log_file.record_failure("x" * 150)
    log_file.record_failure("second")
    log_file.record_failure("third")
    path = log_file.log_path()
    assert "second" in path.read_text() and "third" in path.read_text()
    assert "x" * 150 in path.with_name("freezestudio.log.1").read_text()
    assert sorted(p.name for p in path.parent.iterdir()) == ["freezestudio.log",
                                                             "freezestudio.log.1"]


def test_an_unwritable_location_falls_back_to_the_temporary_folder(tmp_path, monkeypatch):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the state folder should be")
    monkeypatch.setenv("XDG_STATE_HOME", str(blocker))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    written = log_file.record_failure("details")
    assert written == tmp_path / "tmp" / "freezestudio.log"
    assert "details" in written.read_text()
