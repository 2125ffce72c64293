"""`freezestudio --version`, `--install-desktop` and the log path of an unexpected failure,
through the real command line."""

from __future__ import annotations

import subprocess
import sys

import pytest
from cli_runner import run_cli
from test_packaging import validate_desktop_entry

import freezestudio
from freezestudio.commands.install_desktop import desktop_entry, exec_argument
from freezestudio.resources import APP_ID, ICON_SIZES, demo_file

pytestmark = pytest.mark.skipif(sys.platform in ("win32", "darwin"),
                                reason="freedesktop desktop integration")


def test_version():
    run = run_cli("--version")
    assert run.returncode == 0 and run.stdout == f"freezestudio {freezestudio.__version__}\n"


def _exec_command(entry_text: str) -> list[str]:
    """The Exec key's command, unescaped as the Desktop Entry Specification says (the
    string escapes, then the quoting), without its field codes."""
    (value,) = [line[5:] for line in entry_text.splitlines() if line.startswith("Exec=")]
    value = value.replace("\\\\", "\\")  # the string escape of a backslash
    arguments, current, quoted, escaped, started = [], "", False, False, False
    for char in value:
        if escaped:
            current, escaped = current + char, False
        elif quoted and char == "\\":
            escaped = True
        elif char == '"':
            quoted, started = not quoted, True
        elif char == " " and not quoted:
            if current or started:
                arguments.append(current)
            current, started = "", False
        else:
            current += char
    arguments.append(current)
    return [a for a in arguments if a not in ("%f", "%F")]


def test_install_desktop_writes_a_valid_entry_that_starts_this_freezestudio(tmp_path,
                                                                             monkeypatch):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "share"))
    run = run_cli("--install-desktop")
    assert run.returncode == 0, run.stderr[-2000:]
    share = tmp_path / "share"
    entry = share / "applications" / f"{APP_ID}.desktop"
    assert str(entry) in run.stdout
    validate_desktop_entry(entry)
    command = _exec_command(entry.read_text())
    started = subprocess.run([*command, "--version"], capture_output=True, text=True,
                             timeout=60)
    assert started.stdout == f"freezestudio {freezestudio.__version__}\n", started.stderr
    for size in ICON_SIZES:
        assert (share / f"icons/hicolor/{size}x{size}/apps/{APP_ID}.png").is_file()
    assert (share / f"icons/hicolor/scalable/apps/{APP_ID}.svg").is_file()
    assert (share / "metainfo" / f"{APP_ID}.metainfo.xml").is_file()
    assert (share / "mime/packages" / f"{APP_ID}.xml").is_file()
    globs = share / "mime" / "globs2"
    if globs.exists():  # update-mime-database is installed: the database knows .keras
        assert "application/x-keras:*.keras" in globs.read_text()


def test_an_exec_path_with_spaces_and_quotes_survives_the_escapes():
    command = ["/opt/Free Studio/bin/free\"studio", "--x=$HOME\\y"]
    assert _exec_command(desktop_entry(command)) == command
    assert exec_argument("/usr/bin/freezestudio") == "/usr/bin/freezestudio"


def test_an_unexpected_failure_prints_the_log_path(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    demo = demo_file("cnn_transfer.keras")
    with open("/dev/full", "w") as full:  # the output cannot be written: not a user error
        done = subprocess.run([sys.executable, "-m", "freezestudio", "inspect", str(demo)],
                              stdout=full, stderr=subprocess.PIPE, text=True, timeout=180)
    log = tmp_path / "state" / "freezestudio" / "log" / "freezestudio.log"
    assert done.returncode == 1
    assert done.stderr.splitlines()[-1] == (
        f"freezestudio: unexpected failure: OSError: [Errno 28] No space left on device "
        f"(details in {log})")
    text = log.read_text()
    assert f"freezestudio inspect {demo}\nTraceback" in text and "OSError" in text
