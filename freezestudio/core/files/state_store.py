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

from freezestudio.core.errors import ModelFileError
from freezestudio.core.files import formats, limits

_MEMBER = "freezestudio.json"
_H5_ATTRIBUTE = "freezestudio"
_SAVEDMODEL_FILE = Path("assets.extra") / "freezestudio.json"


def read_state(path: Path, fmt: str) -> dict | None:
    """The stored state of a model file, or None if it has none or it is unreadable
    (corrupt, beyond the bounds of `limits`, or not a JSON object)."""
    try:
        raw = _read_raw(Path(path), fmt)
        state = limits.parse_config(raw, path, "the stored edit state") if raw else None
    except (ModelFileError, OSError, ValueError, KeyError, TypeError, RuntimeError, EOFError,
            NotImplementedError, zipfile.BadZipFile):
        return None
    return state if isinstance(state, dict) else None


def _read_raw(path: Path, fmt: str):
    if fmt == formats.KERAS:
        with zipfile.ZipFile(path) as archive:
            if _MEMBER not in archive.namelist():
                return None
            member = archive.getinfo(_MEMBER)
            limits.check_member_size(member, path)
            return archive.read(member)
    if fmt == formats.H5:
        import h5py

        with h5py.File(path, "r") as handle:
            raw = handle.attrs.get(_H5_ATTRIBUTE)
        return raw if isinstance(raw, str | bytes) else None
    if fmt in (formats.SAVEDMODEL, formats.TF_KERAS_SAVEDMODEL):
        file = path / _SAVEDMODEL_FILE
        if not file.is_file() or file.stat().st_size > limits.MAX_CONFIG_BYTES:
            return None
        return file.read_bytes()
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
