"""Readers for the data sources of `data.load_data`: .npz, .csv and image folders.

Each returns a `TrainingData` with the source's own validation data (if any); the
validation split and the fit check are applied afterwards.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from freezestudio.core.data.samples import ImageSpec, Split, TrainingData
from freezestudio.core.errors import UserError
from freezestudio.core.model.signature import ModelIO

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif"}


# --- npz ---------------------------------------------------------------------------
def load_npz(path: Path, io: ModelIO, labels: bool = True) -> TrainingData:
    """`labels=False`: `y` (and `y_val`) may be missing; the splits then have `y == []`."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: cannot be read as .npz ({exc})") from None
    in_names = [spec.name for spec in io.inputs]
    out_names = [spec.name for spec in io.outputs]
    x = _npz_arrays(path, arrays, in_names, "x", "input")
    y = _npz_arrays(path, arrays, out_names, "y", "output", optional=not labels)
    x_val = _npz_arrays(path, arrays, in_names, "x_val", "input", suffix="_val", optional=True)
    y_val = _npz_arrays(path, arrays, out_names, "y_val", "output", suffix="_val",
                        optional=True)
    if y is None:  # inputs only (labels not needed): a y_val alone is not used
        y, y_val = [], ([] if x_val is not None else None)
    if (x_val is None) != (y_val is None):
        have, missing = ("x_val", "y_val") if y_val is None else ("y_val", "x_val")
        raise UserError(f"{path}: has {have} but no {missing} (validation needs both)")
    validation = Split(x_val, y_val) if x_val is not None else None
    return TrainingData(f"{path.name} (npz{'' if y else ', no labels'})", Split(x, y), validation,
                        "explicit" if validation is not None else "none")


def _npz_arrays(path, arrays: dict, names: list, single_key: str, what: str,
                suffix: str = "", optional: bool = False):
    if len(names) == 1 and single_key in arrays:
        return [arrays[single_key]]
    keys = [name + suffix for name in names]
    if all(key in arrays for key in keys):
        return [arrays[key] for key in keys]
    if optional and not any(key in arrays for key in keys):
        return None
    expected = single_key if len(names) == 1 else ", ".join(keys)
    alternative = f" (or '{keys[0]}', the model's {what} name)" if len(names) == 1 else \
        f" (one array per model {what})"
    missing = [key for key in keys if key not in arrays] if len(names) > 1 else [expected]
    raise UserError(f"{path}: missing array {', '.join(repr(m) for m in missing)}: expected "
                    f"{expected}{alternative}; found {', '.join(sorted(arrays)) or 'nothing'}")


# --- npy (inputs only) ---------------------------------------------------------------
def load_npy(path: Path, io: ModelIO) -> TrainingData:
    """One array: the samples of a one-input model, no labels (calibration, verification)."""
    if len(io.inputs) != 1:
        raise UserError(f"{path}: an .npy holds one array, but the model has {len(io.inputs)} "
                        "inputs: use an .npz with one array per input")
    try:
        x = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: cannot be read as .npy ({exc})") from None
    return TrainingData(f"{path.name} (npy, no labels)", Split([x], []))


# --- csv ---------------------------------------------------------------------------
def load_csv(path: Path, io: ModelIO, target: str | None) -> TrainingData:
    try:
        with open(path, newline="") as handle:
            rows = list(csv.reader(handle))
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: cannot be read ({exc})") from None
    rows = [row for row in rows if any(cell.strip() for cell in row)]
    if len(rows) < 2:
        raise UserError(f"{path}: needs a header row and at least one row of data")
    header = [name.strip() for name in rows[0]]
    if all(_is_number(name) for name in header):
        raise UserError(f"{path}: the first row ({', '.join(header[:4])}"
                        f"{', ...' if len(header) > 4 else ''}) is numbers, but it is read as "
                        "the column names: add a header row")
    column = len(header) - 1 if target is None else _column(path, header, target)
    values = np.empty((len(rows) - 1, len(header)), dtype=np.float64)
    for r, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise UserError(f"{path}: line {r} has {len(row)} values, the header "
                            f"{len(header)}")
        for c, cell in enumerate(row):
            try:
                values[r - 2, c] = float(cell)
            except ValueError:
                raise UserError(f"{path}: line {r}, column '{header[c]}': "
                                f"'{cell.strip()[:30]}' is not a number (only numeric "
                                "columns are supported)") from None
    if len(io.inputs) != 1 or len(io.outputs) != 1:
        raise UserError(f"{path}: a CSV feeds models with one input and one output; this "
                        f"model has {len(io.inputs)} inputs and {len(io.outputs)} outputs")
    features = np.delete(values, column, axis=1).astype(np.float32)
    labels = values[:, column]
    labels = labels.astype(np.int64) if np.all(labels == np.round(labels)) \
        else labels.astype(np.float32)
    return TrainingData(f"{path.name} (csv, target '{header[column]}')",
                        Split([features], [labels]))


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _column(path: Path, header: list, target: str) -> int:
    if target in header:
        return header.index(target)
    raise UserError(f"{path}: no column '{target}'; columns: {', '.join(header)}")


# --- image folder --------------------------------------------------------------------
def load_image_folder(path: Path, io: ModelIO, scale: float,
                      labels: bool = True) -> TrainingData:
    """One sub-folder of images per class; `labels=False` also takes a folder of images
    without class sub-folders (its split then has `y == []`)."""
    classes = sorted(p.name for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes and not labels:
        return _unlabelled_images(path, io, scale)
    if not classes:
        raise UserError(f"{path}: an image folder needs one sub-folder per class; found none")
    spec = _image_spec(path, io, scale)
    files, labels = [], []
    for index, name in enumerate(classes):
        found = sorted(p for p in (path / name).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        files += [str(p) for p in found]
        labels += [index] * len(found)
    if not files:
        raise UserError(f"{path}: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in the "
                        "class sub-folders")
    return TrainingData(f"{path.name}/ (images, {len(classes)} classes)",
                        Split([np.array(files)], [np.array(labels, dtype=np.int64)]),
                        class_names=classes, image=spec)


def _unlabelled_images(path: Path, io: ModelIO, scale: float) -> TrainingData:
    spec = _image_spec(path, io, scale)
    files = sorted(str(p) for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise UserError(f"{path}: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) and no "
                        "class sub-folders")
    return TrainingData(f"{path.name}/ (images, no labels)", Split([np.array(files)], []),
                        image=spec)


def _image_spec(path: Path, io: ModelIO, scale: float) -> ImageSpec:
    if len(io.inputs) != 1 or len(io.inputs[0].shape) != 4:
        shapes = ", ".join(str(spec.shape) for spec in io.inputs)
        raise UserError(f"{path}: images need a model with one image input (batch, height, "
                        f"width, channels); this model takes {shapes}")
    _, height, width, channels = io.inputs[0].shape
    if height is None or width is None or channels not in (1, 3, 4):
        raise UserError(f"{path}: the model's input {io.inputs[0].shape} has no fixed image "
                        "size and 1, 3 or 4 channels")
    return ImageSpec(height, width, channels, scale)
