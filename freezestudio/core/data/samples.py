"""Training samples: the arrays (or image paths) read from a source, fed through tf.data.

The sources and how they are read: `freezestudio.core.data.load_data`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


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

    def input_batches(self, split: Split, batch_size: int):
        """The split's inputs in order, batch by batch (the last batch partial), for one
        pass over them such as the feature-caching pass: `(specs, batches)`, `specs` one
        `tf.TensorSpec` per input with an unknown batch size and `batches` an iterable of
        lists (one array or tensor per input). Arrays are sliced as they are: one ordered
        pass needs no tf.data pipeline. Image folders are decoded through `dataset`.
        """
        import tensorflow as tf

        if self.image is not None:
            ds = self.dataset(split, batch_size)
            return list(ds.element_spec[0]), (list(x) for x, _ in ds)
        specs = [tf.TensorSpec((None, *a.shape[1:]),
                               tf.string if a.dtype.kind in "US" else tf.as_dtype(a.dtype))
                 for a in split.x]
        return specs, ([a[i:i + batch_size] for a in split.x]
                       for i in range(0, len(split), batch_size))

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
