"""Does the data fit the model? Checked before training, with what was expected and found.

Labels come in two kinds per output (`label_kind`):
- "sparse": one class index per sample (shape = output shape without its last
  dimension) for an output with K > 1 units: indices must lie in 0..K-1;
- "dense": the output's own shape (one-hot rows, regression targets, or one value per
  sample for a one-unit output).
"""

from __future__ import annotations

import numpy as np

from freezestudio.core.data.samples import Split, TrainingData
from freezestudio.core.errors import UserError
from freezestudio.core.model.signature import IOSpec, ModelIO, model_io

SPARSE, DENSE = "sparse", "dense"


def _shape(shape) -> str:
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + \
        ("," if len(shape) == 1 else "") + ")"


def _matches(data_shape, spec_shape) -> bool:
    return len(data_shape) == len(spec_shape) and all(
        s is None or s == d for d, s in zip(data_shape, spec_shape, strict=True))


def _integral(array: np.ndarray) -> bool:
    if np.issubdtype(array.dtype, np.integer) or array.dtype == np.bool_:
        return True
    if not np.issubdtype(array.dtype, np.floating):
        return False
    finite = array[np.isfinite(array)]
    return bool(np.all(finite == np.round(finite))) and finite.size == array.size


def label_kind(spec: IOSpec, y: np.ndarray) -> str | None:
    """SPARSE, DENSE, or None when the labels fit the output in neither way."""
    per_sample = tuple(y.shape[1:])
    if _matches(per_sample, spec.shape[1:]):
        return DENSE
    units = spec.units
    if _matches(per_sample, spec.shape[1:-1]) or _matches(per_sample, (*spec.shape[1:-1], 1)):
        if units == 1:
            return DENSE  # one value per sample for a one-unit output
        if _integral(y):
            return SPARSE
    return None


def check_fits(document, data: TrainingData, io: ModelIO | None = None,
               labels: bool = True) -> None:
    """Refuses data that do not fit the document's model.

    `labels=False`: data without labels (`y == []`, `load_data(labels=False)`) fit too.

    Raises:
        UserError: naming the input/output, what the model expects and what the data hold
            (shape, dtype, number of classes vs output units, sample counts).
    """
    io = io or model_io(document)
    for name, split in (("training", data.train), ("validation", data.validation)):
        if split is not None:
            _check_split(io, split, name, data, labels)


def _check_split(io: ModelIO, split: Split, which: str, data: TrainingData,
                 labels: bool = True) -> None:
    if len(split.x) != len(io.inputs):
        raise UserError(f"the model takes {len(io.inputs)} inputs "
                        f"({', '.join(s.name for s in io.inputs)}); the {which} data have "
                        f"{len(split.x)}")
    if len(split.y) != len(io.outputs) and (labels or split.y):
        raise UserError(f"the model has {len(io.outputs)} outputs; the {which} data have "
                        f"{len(split.y)} label arrays")
    counts = {len(a) for a in split.x + split.y}
    if len(counts) > 1:
        raise UserError(f"the {which} arrays disagree on the number of samples: "
                        f"inputs {[len(a) for a in split.x]}, labels {[len(a) for a in split.y]}")
    if not counts or counts == {0}:
        raise UserError(f"the {which} data hold no samples")
    if data.image is None:
        for spec, array in zip(io.inputs, split.x, strict=True):
            _check_input(spec, array, which)
    for spec, array in zip(io.outputs if split.y else [], split.y, strict=True):
        _check_labels(spec, array, which, data.class_names)


def _check_input(spec: IOSpec, array: np.ndarray, which: str) -> None:
    expected = spec.shape[1:]
    if not _matches(tuple(array.shape[1:]), expected):
        raise UserError(f"input '{spec.name}' expects samples of shape {_shape(expected)} "
                        f"(model input {_shape(spec.shape)}); the {which} data have "
                        f"{_shape(array.shape[1:])} (array {_shape(array.shape)})")
    numeric = np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_
    if not numeric:
        raise UserError(f"input '{spec.name}' expects {spec.dtype} values; the {which} data "
                        f"hold {array.dtype} values")
    if ("int" in spec.dtype or spec.dtype == "bool") and not _integral(array):
        raise UserError(f"input '{spec.name}' expects {spec.dtype} values (e.g. token ids); "
                        f"the {which} data hold non-integer {array.dtype} values")


def _check_labels(spec: IOSpec, y: np.ndarray, which: str, class_names) -> None:
    kind = label_kind(spec, y)
    units = spec.units
    if kind is None:
        sparse_hint = "" if units == 1 else \
            f" or class indices of shape {_shape(spec.shape[1:-1])} (integers 0..{units - 1})"
        raise UserError(f"output '{spec.name}' produces {_shape(spec.shape)}: labels must have "
                        f"shape {_shape(spec.shape[1:])} per sample{sparse_hint}; the {which} "
                        f"labels have {_shape(y.shape[1:])} per sample, dtype {y.dtype}")
    if class_names is not None and units not in (len(class_names),) and \
            not (units == 1 and len(class_names) == 2):
        raise UserError(f"the image folder has {len(class_names)} classes "
                        f"({', '.join(class_names[:5])}) but output '{spec.name}' has "
                        f"{units} units")
    if kind == SPARSE:
        low, high = int(np.min(y)), int(np.max(y))
        if low < 0 or high >= units:
            raise UserError(f"output '{spec.name}' has {units} units (classes 0..{units - 1}) "
                            f"but the {which} labels range from {low} to {high} "
                            f"({high + 1} classes)")


def prepare_split(io: ModelIO, split: Split, kinds: list) -> Split:
    """Casts inputs to the model's dtypes and labels to int32 (sparse) or float32, with
    one-unit outputs' labels given their last dimension."""
    x = [a if a.dtype.kind in "US" else a.astype(spec.dtype if spec.dtype != "bool" else
                                                  np.bool_, copy=False)
         for spec, a in zip(io.inputs, split.x, strict=True)]
    y = []
    for spec, kind, array in zip(io.outputs, kinds, split.y, strict=True):
        if kind == SPARSE:
            array = array.astype(np.int32).reshape(array.shape[:len(spec.shape) - 1])
        else:
            array = array.astype(np.float32)
            if array.ndim == len(spec.shape) - 1:
                array = array[..., None]
        y.append(array)
    return Split(x, y)
