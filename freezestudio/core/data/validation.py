"""The validation part of a run's data: the source's own, none, or a split-off fraction."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from freezestudio.core.data.samples import TrainingData
from freezestudio.core.errors import UserError


def apply_validation_split(data: TrainingData, fraction: float | None,
                           seed: int | None) -> TrainingData:
    """Sets the validation part per `load_data`'s `validation_split` rule."""
    if fraction is None:
        return data
    if not 0 <= fraction < 1:
        raise UserError(f"validation split must be in [0, 1), got {fraction}")
    if fraction == 0:
        if data.validation is not None:
            data.notes.append("validation split 0: the source's validation data are not used")
        return replace(data, validation=None, validation_origin="none")
    n = len(data.train)
    n_val = int(round(n * fraction))
    if n_val < 1 or n_val >= n:
        raise UserError(f"validation split {fraction} of {n} samples leaves "
                        f"{n_val} for validation and {n - n_val} for training")
    if data.validation is not None:
        data.notes.append(f"validation split {fraction}: replaces the source's own "
                          "validation data")
    order = np.random.default_rng(seed).permutation(n)
    return replace(data, train=data.train.subset(np.sort(order[n_val:])),
                   validation=data.train.subset(np.sort(order[:n_val])),
                   validation_origin=f"split {fraction:g}")
