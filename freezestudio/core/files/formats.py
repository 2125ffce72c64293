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
_EXPECTED = "expected a .keras archive, an .h5 file or a SavedModel directory"
# Leading bytes of files users hand over by mistake -> what to call them.
_MAGIC_KINDS = (
    (b"\x93NUMPY", "a NumPy .npy array (data, not a model)"),
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"BM", "a BMP image"),
    (b"%PDF", "a PDF document"),
    (b"\x1f\x8b", "a gzip-compressed file (unpack it first?)"),
    (b"\x80", "a Python pickle (FreezeStudio does not unpickle files)"),
    (b"ustar", "a tar archive (unpack it first?)"),
)
_DATA_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".gif"}


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
        _check_keras_archive(path)
        found = KERAS
    elif head.startswith(_HDF5_MAGIC):
        found = H5
    else:
        kind = _kind_of(path, head)
        raise ModelFileError(
            f"{path}: {kind + ', ' if kind else ''}not a model file FreezeStudio can open "
            f"({_EXPECTED})"
        )
    suffix = path.suffix.lower()
    accepted = {".h5", ".hdf5"} if found == H5 else {".keras"}
    if suffix not in accepted:
        raise ModelFileError(
            f"{path}: the content is a {_EXTENSION_OF[found]} model but the name ends in "
            f"'{suffix or '(no extension)'}'; rename it to end in {_EXTENSION_OF[found]}"
        )
    return found


def _check_keras_archive(path: Path) -> None:
    """A zip file is a .keras model only with a config.json; name what it is otherwise."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, EOFError, OSError, ValueError):
        return  # a damaged archive: the config scan reports it as corrupt or truncated
    if "config.json" in names:
        return
    if names and all(name.endswith(".npy") for name in names):
        raise ModelFileError(
            f"{path}: a NumPy .npz archive of {len(names)} array(s) (data, e.g. for "
            f"train --data), not a model file FreezeStudio can open ({_EXPECTED})")
    raise ModelFileError(
        f"{path}: a zip archive but not a Keras model archive (no config.json among its "
        f"{len(names)} member(s)); {_EXPECTED}")


def _kind_of(path: Path, head: bytes) -> str:
    """What a file that is no model seems to be ("" when it cannot be told)."""
    for magic, kind in _MAGIC_KINDS:
        if head.startswith(magic):
            return kind
    try:
        with open(path, "rb") as handle:
            sample = handle.read(4096)
    except OSError:
        return ""
    if b"\x00" in sample:
        return ""
    try:
        text = sample.decode("utf-8")
    except UnicodeDecodeError:
        return ""
    stripped = text.lstrip()
    if stripped.startswith(("{", "[")):
        return "a JSON text file (a plan or a config, perhaps)"
    first = stripped.splitlines()[0] if stripped else ""
    if "," in first or "\t" in first:
        return "a CSV text file (data, e.g. for train --data)"
    return "a text file"


def _detect_directory(path: Path) -> str:
    if not os.access(path, os.R_OK | os.X_OK):
        raise ModelFileError(f"{path}: permission denied")
    if not ((path / "saved_model.pb").is_file() or (path / "saved_model.pbtxt").is_file()):
        raise ModelFileError(f"{path}: {_directory_kind(path)}the directory holds no "
                             "SavedModel (no saved_model.pb)")
    if (path / "keras_metadata.pb").is_file():
        return TF_KERAS_SAVEDMODEL
    return SAVEDMODEL


def _directory_kind(path: Path) -> str:
    """"a folder of images ..., " for an image-class folder, else ""."""
    try:
        folders = [child for child in path.iterdir() if child.is_dir()]
        images = any(file.suffix.lower() in _DATA_EXTENSIONS
                     for folder in folders[:50] for file in list(folder.iterdir())[:50])
    except OSError:
        return ""
    if images:
        return "a folder of images by class (data, e.g. for train --data), not a model: "
    return ""
