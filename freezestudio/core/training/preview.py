"""What a training run would train on, before it starts: the data source and its preview.

`DataSpec` names the data (a path, or `DEMO_SOURCE`) and how validation is split off;
`read_data` reads it for a document's model and `read_preview` adds what the user sees
before a run (the data's summary, why they do not fit, the loss that would be chosen, the
devices). Qt-free: a GUI runs these on its own background thread.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from freezestudio.core.errors import UserError

DEMO_SOURCE = "demo"


@dataclass(frozen=True)
class DataSpec:
    """Where the training data come from and how validation is split off.

    Attributes:
        source: a file or folder path, or "demo" (the bundled data for the demo models).
        validation_split: None (the source's own validation data), 0 (none) or a fraction.
        seed: for the split's shuffle.
        target: CSV label column (None: the last).
    """

    source: str
    validation_split: float | None = None
    seed: int | None = None
    target: str | None = None


@dataclass
class Preview:
    """What a data source holds and whether it fits the model.

    Attributes:
        spec: the request.
        data: the loaded `TrainingData` (None if it could not be read).
        summary: `TrainingData.summary()`.
        error: why the data cannot be used (unreadable, or it does not fit the model).
        losses: the loss chosen automatically per output, with the reason.
        devices: the devices TensorFlow can run on (`/CPU:0`, ...).
    """

    spec: DataSpec
    data: object = None
    summary: dict = field(default_factory=dict)
    error: str = ""
    losses: list = field(default_factory=list)
    devices: list = field(default_factory=list)


def read_data(document, spec: DataSpec):
    """Reads the data of `spec` for the document's model.

    Args:
        document: the model's document (its inputs and outputs shape the data; a demo
            source is found beside its file).
        spec: the data source and its split.

    Returns:
        The `TrainingData`.

    Raises:
        UserError: the source cannot be read or does not fit the model's inputs.
    """
    from freezestudio.core.data import load_data
    from freezestudio.core.model.signature import model_io

    return load_data(spec.source, model_io(document), target=spec.target,
                     validation_split=spec.validation_split, seed=spec.seed,
                     model_path=getattr(document, "source_path", None))


def read_preview(document, spec: DataSpec) -> Preview:
    """Reads the data source, checks it against the document's model and tells the loss a
    run would choose, without changing the document (`Trainer.prepare` would write its
    flags, which must not happen outside a run).

    Args:
        document: the model's document.
        spec: the data source and its split.

    Returns:
        The preview; a problem with the data is its `error`, not an exception.
    """
    from freezestudio.core.training.devices import list_devices
    from freezestudio.core.training.setup import preview_losses

    preview = Preview(spec)
    try:
        preview.devices = [d.name for d in list_devices()]
    except Exception:  # noqa: BLE001 - the device list is a convenience
        preview.devices = []
    try:
        data = read_data(document, spec)
        preview.data = data
        preview.summary = data.summary()
        preview.losses = [(c.name, c.describe()) for c in preview_losses(document, data)]
    except UserError as exc:
        preview.error = str(exc)
    return preview
