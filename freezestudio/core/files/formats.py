"""What kind of model a path holds, told from its content, with a clear error otherwise."""

from __future__ import annotations

import os
from pathlib import Path

from freezestudio.core.errors import ModelFileError
from freezestudio.core.model.source import SourceFormat

KERAS = SourceFormat.KERAS
H5 = SourceFormat.H5
TF_KERAS_SAVEDMODEL = SourceFormat.TF_KERAS_SAVEDMODEL
SAVEDMODEL = SourceFormat.SAVEDMODEL

_ZIP_MAGIC = b"PK\x03\x04"
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_EXTENSION_OF = {KERAS: ".keras", H5: ".h5"}


def detect_format(path: str | os.PathLike) -> SourceFormat:
    """Returns KERAS, H5, TF_KERAS_SAVEDMODEL or SAVEDMODEL for `path`.

    Raises:
        ModelFileError: missing, unreadable, empty, mis-named or not a model at all.
    """
    path = Path(path)
    if not path.exists():
        raise ModelFileError(f"{path}: no such file or directory")
    if path.is_dir():
        return _detect_directory(path)
    if path.name in ("saved_model.pb", "saved_model.pbtxt"):
        return _detect_directory(path.parent)
    try:
        with open(path, "rb") as handle:
            head = handle.read(8)
    except PermissionError:
        raise ModelFileError(f"{path}: permission denied") from None
    except OSError as exc:
        raise ModelFileError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    if not head:
        raise ModelFileError(f"{path}: the file is empty")
    if head.startswith(_ZIP_MAGIC):
        found = KERAS
    elif head.startswith(_HDF5_MAGIC):
        found = H5
    else:
        raise ModelFileError(
            f"{path}: not a model file FreezeStudio can open "
            "(expected a .keras archive, an .h5 file or a SavedModel directory)"
        )
    suffix = path.suffix.lower()
    accepted = {".h5", ".hdf5"} if found == H5 else {".keras"}
    if suffix not in accepted:
        raise ModelFileError(
            f"{path}: the content is a {_EXTENSION_OF[found]} model but the name ends in "
            f"'{suffix or '(no extension)'}'; rename it to end in {_EXTENSION_OF[found]}"
        )
    return found


def _detect_directory(path: Path) -> str:
    if not os.access(path, os.R_OK | os.X_OK):
        raise ModelFileError(f"{path}: permission denied")
    if not ((path / "saved_model.pb").is_file() or (path / "saved_model.pbtxt").is_file()):
        raise ModelFileError(f"{path}: the directory holds no SavedModel (no saved_model.pb)")
    if (path / "keras_metadata.pb").is_file():
        return TF_KERAS_SAVEDMODEL
    return SAVEDMODEL
