"""Files shipped inside the package (package data): the demo models and their data, the
application icon and the desktop integration files.

Found through `importlib.resources`, so an installed wheel has them as a checkout does.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

DEMO_DIR = Path(str(files(__name__) / "demo"))
"""The bundled demo models, task-B data and plan (see `demo/README.md`)."""

APP_ID = "io.github.freezestudio.FreezeStudio"
"""The reverse-DNS application id: the name of the desktop entry, the AppStream component
and the installed icon."""

ICON_DIR = Path(str(files(__name__) / "icons"))
ICON_SVG = ICON_DIR / "freezestudio.svg"
"""The application icon's one drawn source (`scripts/make_icons.py` renders the PNGs)."""
ICON_SIZES = (16, 24, 32, 48, 64, 128, 256)
"""The PNG sizes shipped beside the SVG (the hicolor theme's usual application sizes)."""

DESKTOP_DIR = Path(str(files(__name__) / "desktop"))
"""The freedesktop files: `<APP_ID>.desktop`, `<APP_ID>.metainfo.xml` (AppStream) and
`freezestudio-mime.xml` (shared-mime-info: `.keras`)."""


def icon_png(size: int) -> Path:
    """The application icon rendered at `size` x `size` pixels (one of `ICON_SIZES`)."""
    return ICON_DIR / f"freezestudio-{size}.png"


def is_bundled_demo(path) -> bool:
    """Whether `path` is inside the bundled demo folder (read-only templates: nothing is
    ever saved or exported into it)."""
    try:
        Path(path).resolve().relative_to(DEMO_DIR.resolve())
    except (ValueError, OSError):
        return False
    return True


def demo_file(name: str) -> Path:
    """The path of one bundled demo file, e.g. `demo_file("cnn_transfer.keras")`."""
    return DEMO_DIR / name
