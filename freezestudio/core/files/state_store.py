"""FreezeStudio's own state stored inside a saved model, where Keras ignores it.

Keras saves each layer's `trainable` flag but not a variable's own flag, so per-weight
freezing (and anything else plain Keras cannot express) is kept as a plan (docs/architecture.md
format) inside the file:

- `.keras` archive: an extra member `freezestudio.json` (Keras reads only its own members);
- `.h5`: the root attribute `freezestudio` (a JSON string);
- SavedModel directory: `assets.extra/freezestudio.json` (the folder TensorFlow reserves
  for files it does not read).

The stored object is `{"freezestudio_state": 1, "plan": PLAN}`.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

from freezestudio.core.files import formats

_MEMBER = "freezestudio.json"
_H5_ATTRIBUTE = "freezestudio"
_SAVEDMODEL_FILE = Path("assets.extra") / "freezestudio.json"


def read_state(path: Path, fmt: str) -> dict | None:
    """The stored state of a model file, or None if it has none or it is unreadable."""
    try:
        raw = _read_raw(Path(path), fmt)
        return json.loads(raw) if raw else None
    except (OSError, ValueError, KeyError, zipfile.BadZipFile):
        return None


def _read_raw(path: Path, fmt: str):
    if fmt == formats.KERAS:
        with zipfile.ZipFile(path) as archive:
            return archive.read(_MEMBER) if _MEMBER in archive.namelist() else None
    if fmt == formats.H5:
        import h5py

        with h5py.File(path, "r") as handle:
            return handle.attrs.get(_H5_ATTRIBUTE)
    if fmt in (formats.SAVEDMODEL, formats.TF_KERAS_SAVEDMODEL):
        file = path / _SAVEDMODEL_FILE
        return file.read_text() if file.is_file() else None
    return None


def write_state(path: Path, fmt: str, plan: dict) -> None:
    """Stores `plan` in a freshly written model file (or directory)."""
    text = json.dumps({"freezestudio_state": 1, "plan": plan}, indent=1)
    path = Path(path)
    if fmt == formats.KERAS:
        with zipfile.ZipFile(path, "a") as archive:
            archive.writestr(_MEMBER, text)
    elif fmt == formats.H5:
        import h5py

        with h5py.File(path, "a") as handle:
            handle.attrs[_H5_ATTRIBUTE] = text
    else:
        file = path / _SAVEDMODEL_FILE
        file.parent.mkdir(exist_ok=True)
        file.write_text(text)
