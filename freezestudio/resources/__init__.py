"""Files shipped inside the package (package data): the demo models and their data.

Found through `importlib.resources`, so an installed wheel has them as a checkout does.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

DEMO_DIR = Path(str(files(__name__) / "demo"))
"""The bundled demo models, task-B data and plan (see `demo/README.md`)."""


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
