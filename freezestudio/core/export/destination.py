"""Where an export goes: checked before any work, written by atomic rename.

Every export is written to a temporary name beside the destination, verified there, and
renamed over the destination only when complete, so a failure (a conversion error, a
verification failure, a full disk, a cancel) leaves nothing new behind and any earlier
file at that name untouched. The helpers are `files.atomic.replace_file`/`replace_directory`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from freezestudio.core.errors import UserError
from freezestudio.core.export.frozen_graph import companion_path
from freezestudio.core.export.options import ExportFormat
from freezestudio.core.files.atomic import replace_directory, replace_file

SUFFIXES = {
    ExportFormat.KERAS: (".keras",),
    ExportFormat.H5: (".h5", ".hdf5"),
    ExportFormat.SAVEDMODEL: (),
    ExportFormat.TFLITE: (".tflite",),
    ExportFormat.ONNX: (".onnx",),
    ExportFormat.FROZEN_GRAPH: (".pb",),
}
"""The usual file name endings (first: the default): `.keras`/`.h5` are required, and no
export may take a name that ends like another format's (model.keras for a TFLite file)."""


def check_destination(out: Path, fmt: str) -> None:
    """Raises UserError unless `out` can be written as a `fmt` export."""
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        blocker = next((p for p in (parent, *parent.parents) if p.exists()), None)
        if blocker is not None and not blocker.is_dir():
            raise UserError(f"{out}: cannot be written: {blocker} is a file, not a folder")
        raise UserError(f"{out}: cannot be written: the folder {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UserError(f"{out}: cannot be written: no permission to write in {parent}")
    if fmt in (ExportFormat.KERAS, ExportFormat.H5) and out.suffix.lower() not in SUFFIXES[fmt]:
        raise UserError(f"{out}: a {fmt} export needs a name ending in {SUFFIXES[fmt][0]}")
    other = next((f for f, endings in SUFFIXES.items()
                  if f != fmt and out.suffix.lower() in endings), None)
    if other is not None:  # e.g. a TFLite flatbuffer written over model.keras
        wanted = f"a name ending in {SUFFIXES[fmt][0]}" if SUFFIXES[fmt] else "a folder name"
        raise UserError(f"{out}: the name says {other}, but this is a {fmt} export: give it "
                        f"{wanted}")
    if fmt == ExportFormat.SAVEDMODEL:
        if out.exists() and not out.is_dir():
            raise UserError(f"{out}: is a file; a SavedModel is a folder: choose another name")
        if out.is_dir() and any(out.iterdir()) and not (out / "saved_model.pb").is_file():
            raise UserError(f"{out}: is a folder that holds no SavedModel; FreezeStudio only "
                            "replaces a SavedModel folder: choose a new name")
    elif out.is_dir():
        raise UserError(f"{out}: is a folder; a {fmt} export is a file: give a file name")
    if fmt == ExportFormat.FROZEN_GRAPH and companion_path(out).is_dir():
        raise UserError(f"{companion_path(out)}: is a folder; the frozen graph's tensor list "
                        "goes there")


def commit(out: Path, fmt: str, write: Callable[[Path], None]) -> list[Path]:
    """Calls `write(tmp)` for a temporary path beside `out`, then renames it to `out`.

    For a frozen graph `write` also writes `companion_path(tmp)`, moved to
    `companion_path(out)` just before the graph itself.

    Returns:
        The paths written, the main one first.

    Raises:
        UserError: the destination cannot be written (nothing is left behind).
    """
    try:
        if fmt == ExportFormat.SAVEDMODEL:
            replace_directory(out, write)
            return [out]
        if fmt == ExportFormat.FROZEN_GRAPH:
            replace_file(out, lambda tmp: _write_with_companion(tmp, out, write))
            return [out, companion_path(out)]
        replace_file(out, write)
        return [out]
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise UserError(f"{out}: could not be written ({reason}); nothing was left "
                        "behind") from None


def _write_with_companion(tmp: Path, out: Path, write) -> None:
    tmp_companion = companion_path(tmp)
    try:
        write(tmp)
        os.replace(tmp_companion, companion_path(out))
    finally:
        if tmp_companion.exists():
            tmp_companion.unlink()
