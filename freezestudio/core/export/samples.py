"""The user's samples for an export: calibration of full-integer quantisation, verification.

Read with `core.data.load_data`, so any data `train --data` accepts works (an .npz, a
.csv, an image folder, `demo`), and inputs without labels too (an .npz without `y`, an
.npy, a folder of images without class sub-folders): calibration needs no labels, and
verification without them reports the agreement but no accuracy. Which rows: calibration
takes the training rows (what the model is fitted to see), verification the held-out rows
when the data has them (its validation split) and the training rows otherwise, so an
export is judged on data the calibration did not see whenever possible.
"""

from __future__ import annotations

from dataclasses import dataclass

from freezestudio.core.errors import UserError


@dataclass(frozen=True)
class Samples:
    """Rows of the user's data, as arrays in the model's input and output order.

    Attributes:
        inputs: one array per model input (images decoded and scaled).
        labels: one array per model output, or None when the data has no labels.
        source: what the rows are, for the report ("cnn_task_b.npz (npz), validation").
    """

    inputs: list
    labels: list | None
    source: str

    def __len__(self) -> int:
        return int(len(self.inputs[0]))

    def feeds(self, inference) -> dict:
        """`{input name: array}` for an `InferenceModel` (inputs matched by position)."""
        import numpy as np

        if len(self.inputs) != len(inference.inputs):
            raise UserError(f"the data has {len(self.inputs)} input(s), the model "
                            f"{len(inference.inputs)}")
        return {t.name: np.asarray(a, dtype=t.dtype)
                for t, a in zip(inference.inputs, self.inputs, strict=True)}


def read_samples(document, source, *, limit: int, held_out: bool, seed: int = 0,
                 model_path=None) -> Samples:
    """Reads up to `limit` rows of `source` for the document's model.

    Args:
        document: the model the samples are for (its inputs decide keys and sizes).
        source: anything `load_data` accepts.
        limit: the most rows returned (a seeded random choice when there are more).
        held_out: prefer the validation rows (verification) over the training rows.
        seed: the choice of rows.
        model_path: the model's file, for `demo`.

    Raises:
        UserError: unreadable data, or data that do not fit the model.
    """
    import numpy as np

    from freezestudio.core.data import load_data
    from freezestudio.core.data.fit import check_fits
    from freezestudio.core.model.signature import model_io

    io = model_io(document)
    data = load_data(source, io, validation_split=None, model_path=model_path, labels=False)
    check_fits(document, data, io, labels=False)
    split, which = data.train, "training rows"
    if held_out and data.validation is not None and len(data.validation):
        split, which = data.validation, "validation rows"
    if len(split) > limit:
        chosen = np.sort(np.random.default_rng(seed).choice(len(split), limit, replace=False))
        split = split.subset(chosen)
    if data.image is not None:
        inputs = _decoded_images(data, split)
    else:
        inputs = [np.asarray(a) for a in split.x]
    labels = [np.asarray(y) for y in split.y] if split.y else None
    return Samples(inputs, labels, f"{data.source}, {len(split)} {which}")


def _decoded_images(data, split) -> list:
    import numpy as np

    batches = [x for x, _ in data.dataset(split, batch_size=64)]
    return [np.concatenate([b[i].numpy() for b in batches]) for i in range(len(split.x))]
