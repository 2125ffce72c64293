"""The log file of unexpected failures, in the platform's log location.

- Linux and other freedesktop systems: `$XDG_STATE_HOME/freezestudio/log/freezestudio.log`
  (`~/.local/state/...` when XDG_STATE_HOME is unset), the XDG base-directory home of logs;
- macOS: `~/Library/Logs/FreezeStudio/freezestudio.log`;
- Windows: `%LOCALAPPDATA%\\FreezeStudio\\Logs\\freezestudio.log`.

Each failure is appended as one entry (a header line with the time, the version, the
process and what ran, then the traceback); a log grown past `MAX_BYTES` is moved to
`freezestudio.log.1` first, so the folder never holds more than two files. When the
location cannot be written the log goes to the temporary folder instead; a failure to log
never hides the failure itself.
"""

from __future__ import annotations

import os
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from freezestudio import __version__

LOG_NAME = "freezestudio.log"
MAX_BYTES = 1_000_000


def log_dir() -> Path:
    """The folder of the log file on this platform (it may not exist yet)."""
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
        return Path(base) / "FreezeStudio" / "Logs"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Logs" / "FreezeStudio"
    state = os.environ.get("XDG_STATE_HOME")
    base = Path(state) if state and Path(state).is_absolute() else Path.home() / ".local" / "state"
    return base / "freezestudio" / "log"


def log_path() -> Path:
    """The log file on this platform (it may not exist yet)."""
    return log_dir() / LOG_NAME


def record_failure(details: str, context: str = "") -> Path | None:
    """Appends one failure to the log and returns the file written.

    Args:
        details: the traceback (or whatever explains the failure).
        context: what was running, e.g. the command line; on the header line.

    Returns:
        `log_path()`, or a file in the temporary folder when that one cannot be written,
        or None when neither can.
    """
    stamp = datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds")
    header = f"=== {stamp} FreezeStudio {__version__} pid {os.getpid()}"
    entry = f"{header}{' ' + context if context else ''}\n{details.rstrip()}\n\n"
    for path in (log_path(), Path(tempfile.gettempdir()) / LOG_NAME):
        try:
            _append(path, entry)
        except OSError:
            continue
        return path
    return None


def _append(path: Path, entry: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() and path.stat().st_size > MAX_BYTES:
        os.replace(path, path.with_name(path.name + ".1"))
    with path.open("a", encoding="utf-8") as handle:
        handle.write(entry)
