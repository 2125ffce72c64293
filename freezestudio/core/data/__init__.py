"""Training data: read a source into arrays, split off validation, feed it through tf.data.

`load_data` is the dispatcher (the readers are in `sources`, the sample types in the leaf
`samples`, the validation rule in `validation`). Whether the data fit the model is
checked separately (`fit.check_fits`).
"""

from __future__ import annotations

from pathlib import Path

from freezestudio.core.data.samples import ImageSpec, Split, TrainingData
from freezestudio.core.data.validation import apply_validation_split
from freezestudio.core.errors import UserError
from freezestudio.core.model.signature import ModelIO
from freezestudio.resources import demo_file

DEMO_DATA = {"cnn": "cnn_task_b.npz", "text": "text_task_b.npz"}
_DEMO_OF_MODEL = {"cnn_transfer": "cnn", "text_classifier": "text"}

__all__ = ["DEMO_DATA", "ImageSpec", "Split", "TrainingData", "apply_validation_split",
           "load_data", "resolve_demo"]


def resolve_demo(spec: str, model_path=None) -> Path:
    """The bundled npz for `demo` (chosen by the model file's name) or `demo:NAME`."""
    name = spec.partition(":")[2]
    if not name and model_path is not None:
        name = _DEMO_OF_MODEL.get(Path(model_path).stem, "")
    if name not in DEMO_DATA:
        raise UserError(f"no bundled demo data '{spec}': use one of "
                        f"{', '.join('demo:' + n for n in DEMO_DATA)}")
    return demo_file(DEMO_DATA[name])


def load_data(source, io: ModelIO, *, target: str | None = None,
              validation_split: float | None = None, seed: int | None = None,
              image_scale: float = 1 / 255, model_path=None,
              labels: bool = True) -> TrainingData:
    """Reads a data source for a model with the given inputs and outputs.

    Args:
        source: path of an .npz, .csv or image folder, or `demo[:NAME]`.
        io: the model's inputs and outputs (names decide the npz keys, the input
            size decides the image size).
        target: CSV target column (default: the last one).
        validation_split: None: use the source's validation data if it has some;
            0: no validation; 0 < F < 1: that fraction of the (shuffled) training
            samples, replacing any validation data of the source.
        seed: for the validation split's shuffle.
        image_scale: image folders: pixel values are multiplied by this.
        model_path: the model's file, to pick the demo data for `demo`.
        labels: False: inputs alone will do (calibration, verification): an .npz without
            `y`, an .npy holding the one input, a folder of images without class
            sub-folders; their splits have `y == []`.

    Raises:
        UserError: unreadable or malformed source, a missing key, a bad split.
    """
    from freezestudio.core.data.sources import load_csv, load_image_folder, load_npy, load_npz

    text = str(source)
    if text == "demo" or text.startswith("demo:"):
        data = load_npz(resolve_demo(text, model_path), io, labels)
        data.source = f"{text} ({data.source})"
    else:
        path = Path(source)
        if not path.exists():
            raise UserError(f"{path}: no such data file or folder")
        if path.is_dir():
            data = load_image_folder(path, io, image_scale, labels)
        elif path.suffix.lower() == ".npz":
            data = load_npz(path, io, labels)
        elif path.suffix.lower() == ".csv":
            data = load_csv(path, io, target)
        elif path.suffix.lower() == ".npy" and not labels:
            data = load_npy(path, io)
        else:
            inputs_only = "" if labels else ", an .npy of inputs"
            raise UserError(f"{path}: unsupported data (expected an .npz or .csv file"
                            f"{inputs_only}, or a folder with one sub-folder of images per "
                            "class)")
    return apply_validation_split(data, validation_split, seed)


