"""Training data: read a source into arrays, split off validation, feed it through tf.data.

Sources (`load_data`):
- `.npz`: arrays `x`, `y` and optionally `x_val`, `y_val`; for a model with several inputs
  (or outputs) one array per input (output) name, and `<name>_val` for validation;
- `.csv`: a header row and numeric columns; the target column is `target` (default: the
  last column), the others are the features, in file order;
- a folder with one sub-folder per class: images resized to the model's input size and
  scaled by `image_scale`, decoded lazily in the tf.data pipeline;
- `demo`, `demo:cnn`, `demo:text`: the task-B data bundled in `resources/demo`.

Whether the data fit the model is checked separately (`data_fit.check_fits`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from freezestudio.core.errors import UserError
from freezestudio.core.model_io import ModelIO

DEMO_DIR = Path(__file__).resolve().parents[2] / "resources" / "demo"
DEMO_DATA = {"cnn": "cnn_task_b.npz", "text": "text_task_b.npz"}
_DEMO_OF_MODEL = {"cnn_transfer": "cnn", "text_classifier": "text"}


@dataclass
class Split:
    """Samples as arrays: `x` one per model input (image folders: file paths), `y` one
    per model output."""

    x: list
    y: list

    def __len__(self) -> int:
        return int(len(self.x[0]))

    def subset(self, indices) -> Split:
        return Split([a[indices] for a in self.x], [a[indices] for a in self.y])


@dataclass(frozen=True)
class ImageSpec:
    height: int
    width: int
    channels: int
    scale: float


@dataclass
class TrainingData:
    """Training and (optional) validation samples and how they were obtained.

    Attributes:
        source: a short description for the user ("cnn_task_b.npz (npz)").
        train, validation: the splits (validation None: no validation).
        validation_origin: "explicit", "split 0.2" or "none".
        class_names: for image folders, the class of each label index.
        image: set for image folders: `x` holds paths, decoded in the pipeline.
        notes: things the user should know (e.g. explicit validation data replaced).
    """

    source: str
    train: Split
    validation: Split | None = None
    validation_origin: str = "none"
    class_names: list | None = None
    image: ImageSpec | None = None
    notes: list = field(default_factory=list)

    def explain_failure(self, exc: Exception) -> str:
        """For an image folder whose pipeline failed to decode: the files it cannot
        decode (TensorFlow's error names no file), as text to append; else ""."""
        import tensorflow as tf

        if self.image is None or not isinstance(exc, tf.errors.InvalidArgumentError):
            return ""
        bad = []
        paths = [p for split in (self.train, self.validation) if split is not None
                 for p in split.x[0]]
        for path in paths:
            try:
                _decode_file(path, self.image.channels)
            except (tf.errors.InvalidArgumentError, tf.errors.NotFoundError):
                bad.append(str(path.decode() if isinstance(path, bytes) else path))
                if len(bad) == 3:
                    break
        return f" (cannot decode {', '.join(bad)})" if bad else ""

    def dataset(self, split: Split, batch_size: int, shuffle: bool = False,
                seed: int | None = None, repeat: bool = False):
        """A batched, prefetching `tf.data.Dataset` of `((x...), (y...))`.

        Args:
            shuffle: a new order every epoch (seeded by `seed`).
            repeat: endless, epoch after epoch (each epoch ends with its own partial
                batch), so one iterator serves a whole run: creating and deleting an
                iterator per epoch costs up to a second once it has fed a tf.function.
        """
        import tensorflow as tf

        if self.image is not None:
            ds = tf.data.Dataset.from_tensor_slices((tuple(split.x), tuple(split.y)))
            if shuffle:
                ds = ds.shuffle(len(split), seed=seed, reshuffle_each_iteration=True)
            ds = ds.map(_image_decoder(self.image), num_parallel_calls=tf.data.AUTOTUNE)
            ds = ds.batch(batch_size)
            return (ds.repeat() if repeat else ds).prefetch(tf.data.AUTOTUNE)
        # Arrays: shuffle and batch indices, then gather whole batches (one op per array
        # and batch instead of one per sample).
        xs = tuple(tf.constant(a) for a in split.x)
        ys = tuple(tf.constant(a) for a in split.y)
        ds = tf.data.Dataset.range(len(split))
        if shuffle:
            ds = ds.shuffle(len(split), seed=seed, reshuffle_each_iteration=True)

        def gather(indices):
            return (tuple(tf.gather(a, indices) for a in xs),
                    tuple(tf.gather(a, indices) for a in ys))
        ds = ds.batch(batch_size)
        return (ds.repeat() if repeat else ds).map(gather).prefetch(tf.data.AUTOTUNE)

    def summary(self) -> dict:
        """A preview for the user: sample counts, per-sample shapes and dtypes, classes."""
        def shapes(arrays):
            return [{"shape": list(a.shape[1:]), "dtype": str(a.dtype)} for a in arrays]

        labels = []
        for y in self.train.y:
            entry = {"shape": list(y.shape[1:]), "dtype": str(y.dtype)}
            if np.issubdtype(y.dtype, np.integer) and y.ndim == 1:
                entry["classes"] = int(len(np.unique(y)))
            labels.append(entry)
        return {
            "source": self.source,
            "train_samples": len(self.train),
            "validation_samples": len(self.validation) if self.validation is not None else 0,
            "validation": self.validation_origin,
            "inputs": ([{"shape": [self.image.height, self.image.width, self.image.channels],
                         "dtype": "float32", "images": True}] if self.image is not None
                       else shapes(self.train.x)),
            "labels": labels,
            "class_names": self.class_names,
            "notes": list(self.notes),
        }

    def describe(self) -> str:
        val = len(self.validation) if self.validation is not None else 0
        return (f"{self.source}: {len(self.train)} training samples, {val} validation "
                f"({self.validation_origin})")


def _decode_file(path, channels: int):
    import tensorflow as tf

    return tf.io.decode_image(tf.io.read_file(path), channels=channels, expand_animations=False)


def _image_decoder(spec: ImageSpec):
    import tensorflow as tf

    def decode(x, y):
        image = tf.image.resize(_decode_file(x[0], spec.channels), (spec.height, spec.width))
        return (tf.cast(image, tf.float32) * spec.scale,), y
    return decode


def resolve_demo(spec: str, model_path=None) -> Path:
    """The bundled npz for `demo` (chosen by the model file's name) or `demo:NAME`."""
    name = spec.partition(":")[2]
    if not name and model_path is not None:
        name = _DEMO_OF_MODEL.get(Path(model_path).stem, "")
    if name not in DEMO_DATA:
        raise UserError(f"no bundled demo data '{spec}': use one of "
                        f"{', '.join('demo:' + n for n in DEMO_DATA)}")
    return DEMO_DIR / DEMO_DATA[name]


def load_data(source, io: ModelIO, *, target: str | None = None,
              validation_split: float | None = None, seed: int | None = None,
              image_scale: float = 1 / 255, model_path=None) -> TrainingData:
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

    Raises:
        UserError: unreadable or malformed source, a missing key, a bad split.
    """
    from freezestudio.core.data_sources import load_csv, load_image_folder, load_npz

    text = str(source)
    if text == "demo" or text.startswith("demo:"):
        data = load_npz(resolve_demo(text, model_path), io)
        data.source = f"{text} ({data.source})"
    else:
        path = Path(source)
        if not path.exists():
            raise UserError(f"{path}: no such data file or folder")
        if path.is_dir():
            data = load_image_folder(path, io, image_scale)
        elif path.suffix.lower() == ".npz":
            data = load_npz(path, io)
        elif path.suffix.lower() == ".csv":
            data = load_csv(path, io, target)
        else:
            raise UserError(f"{path}: unsupported data (expected an .npz or .csv file, or a "
                            "folder with one sub-folder of images per class)")
    return apply_validation_split(data, validation_split, seed)


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
