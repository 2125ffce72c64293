"""`freezestudio --install-desktop`: the desktop entry, icon, MIME type and AppStream
metainfo installed for the current user (freedesktop desktops: Linux, BSD).

Files go under `$XDG_DATA_HOME` (`~/.local/share` when unset), named by the application id
(`resources.APP_ID`):

    applications/<APP_ID>.desktop            Exec= the absolute launcher that runs this install
    icons/hicolor/<N>x<N>/apps/<APP_ID>.png  every size of resources.ICON_SIZES
    icons/hicolor/scalable/apps/<APP_ID>.svg
    mime/packages/<APP_ID>.xml               application/x-keras for *.keras
    metainfo/<APP_ID>.metainfo.xml

then the user's MIME, desktop and icon caches are refreshed with the freedesktop tools that
are installed (`update-mime-database`, `update-desktop-database`, `gtk-update-icon-cache`).
Running it again overwrites the same files; nothing else is touched.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from freezestudio.core.errors import UserError
from freezestudio.resources import APP_ID, DESKTOP_DIR, ICON_SIZES, ICON_SVG, icon_png

CACHE_TOOLS = (("update-mime-database", "mime"), ("update-desktop-database", "applications"),
               ("gtk-update-icon-cache", "icons/hicolor"))
"""(tool, the folder under the data home it refreshes)."""


def data_home() -> Path:
    """`$XDG_DATA_HOME`, or `~/.local/share` when it is unset or relative."""
    value = os.environ.get("XDG_DATA_HOME")
    return Path(value) if value and Path(value).is_absolute() else Path.home() / ".local/share"


def launcher_command() -> list[str]:
    """The command that starts this FreezeStudio: the frozen executable of a one-folder
    build, the `freezestudio` script beside this interpreter (a venv's), the one on PATH,
    or `python -m freezestudio` with this interpreter."""
    if getattr(sys, "frozen", False):
        return [sys.executable]
    beside = Path(sys.executable).with_name("freezestudio")
    if beside.is_file() and os.access(beside, os.X_OK):
        return [str(beside)]
    found = shutil.which("freezestudio")
    if found:
        return [str(Path(found).resolve())]
    return [sys.executable, "-m", "freezestudio"]


def exec_argument(argument: str) -> str:
    """One argument of a desktop entry's Exec key, quoted as the Desktop Entry
    Specification asks when it holds a reserved character (the value's own backslash
    escape applies on top, hence the doubled backslashes)."""
    if argument and not any(c in argument for c in ' \t\n"\'\\><~|&;$*?#()`'):
        return argument
    quoted = "".join("\\" + c if c in '"`$\\' else c for c in argument)
    return '"' + quoted.replace("\\", "\\\\") + '"'


def desktop_entry(command: list[str]) -> str:
    """The packaged desktop entry with Exec and TryExec set to `command`."""
    lines = []
    for line in (DESKTOP_DIR / f"{APP_ID}.desktop").read_text(encoding="utf-8").splitlines():
        if line.startswith("Exec="):
            line = "Exec=" + " ".join(map(exec_argument, command)) + " %f"
        elif line.startswith("TryExec="):
            line = "TryExec=" + command[0]
        lines.append(line)
    return "\n".join(lines) + "\n"


def install_desktop(home: Path | None = None, command: list[str] | None = None) -> list[Path]:
    """Installs the desktop integration for the current user.

    Args:
        home: the XDG data home to install into (default: `data_home()`).
        command: what the entry's Exec runs (default: `launcher_command()`).

    Returns:
        The files written.

    Raises:
        UserError: not a freedesktop platform, or the data home cannot be written.
    """
    if sys.platform in ("win32", "darwin"):
        raise UserError("--install-desktop installs a freedesktop desktop entry (Linux, BSD); "
                        "on this platform start FreezeStudio with the `freezestudio` command")
    home = home or data_home()
    command = command or launcher_command()
    targets = {home / "applications" / f"{APP_ID}.desktop": desktop_entry(command),
               home / "icons/hicolor/scalable/apps" / f"{APP_ID}.svg": ICON_SVG,
               home / "mime/packages" / f"{APP_ID}.xml": DESKTOP_DIR / "freezestudio-mime.xml",
               home / "metainfo" / f"{APP_ID}.metainfo.xml":
                   DESKTOP_DIR / f"{APP_ID}.metainfo.xml"}
    for size in ICON_SIZES:
        targets[home / f"icons/hicolor/{size}x{size}/apps" / f"{APP_ID}.png"] = icon_png(size)
    try:
        for target, source in targets.items():
            target.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(source, Path):
                shutil.copyfile(source, target)
            else:
                target.write_text(source, encoding="utf-8")
    except OSError as exc:
        raise UserError(f"cannot install the desktop files into {home}: {exc}") from exc
    refresh_caches(home)
    return list(targets)


def refresh_caches(home: Path) -> list[str]:
    """Runs the freedesktop cache tools that are installed on `home`'s folders; returns
    the ones that ran (a missing tool only delays the desktop noticing the new files)."""
    ran = []
    for tool, folder in CACHE_TOOLS:
        path = shutil.which(tool)
        if path is None:
            continue
        arguments = [path, "-f", "-t"] if tool == "gtk-update-icon-cache" else [path]
        subprocess.run([*arguments, str(home / folder)], capture_output=True, check=False,
                       timeout=60)
        ran.append(tool)
    return ran
