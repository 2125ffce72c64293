"""Run logs: the per-step metrics CSV, the per-epoch history CSV and TensorBoard events.

Each writer is a `Reporter`, so any combination can listen to a run (`MultiReporter`).

- Metrics CSV (docs/architecture.md): one row per step, `epoch,step,loss,` then one column
  `grad_norm:<layer path>` for every layer that owns weights, in tree order: the L2 norm
  of the gradient over its weights that receive gradient, empty where the layer receives
  none.
- History CSV: one row per epoch, `epoch,loss,<metrics>,val_loss,val_<metrics>`.
- TensorBoard: `train/` and `validation/` event files; per step `loss` and
  `grad_norm/<layer path>` (layers that receive gradient), per epoch `epoch_loss` and the
  metrics as `epoch_<name>`.
"""

from __future__ import annotations

import csv
from pathlib import Path

from freezestudio.core.errors import UserError
from freezestudio.core.training.config import Reporter

GRAD_NORM_PREFIX = "grad_norm:"


def _number(value) -> str:
    return "" if value is None else repr(float(value))


def history_path_for(metrics_csv) -> Path:
    """The history CSV written beside a metrics CSV: `run.csv` -> `run.epochs.csv`."""
    path = Path(metrics_csv)
    return path.with_name(f"{path.stem}.epochs{path.suffix or '.csv'}")


def _open_for_writing(path: Path):
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return open(path, "w", newline="")
    except OSError as exc:
        raise UserError(f"{path}: cannot be written ({exc.strerror or exc})") from None


class _CsvReporter(Reporter):
    """A reporter writing one CSV file, opened when it is created, closed with the run."""

    def __init__(self, path):
        self.path = Path(path)
        self._file = _open_for_writing(self.path)
        self._writer = csv.writer(self._file)
        self._columns: list = []

    def run_finished(self, result) -> None:
        self.close()

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()


class MetricsCsvWriter(_CsvReporter):
    """Writes the per-step metrics CSV (opened when the writer is created)."""

    def run_started(self, info) -> None:
        self._columns = list(info.layer_paths)
        self._writer.writerow(["epoch", "step", "loss"] +
                              [GRAD_NORM_PREFIX + p for p in self._columns])

    def step_finished(self, report) -> None:
        self._writer.writerow([report.epoch, report.step, _number(report.loss)] +
                              [_number(report.grad_norms.get(p)) for p in self._columns])

    def epoch_finished(self, report) -> None:
        self._file.flush()


class HistoryCsvWriter(_CsvReporter):
    """Writes one row per epoch: train/validation loss and metrics."""

    def run_started(self, info) -> None:
        train = [n for n in info.metric_names if not n.startswith("val_")]
        val = [n for n in info.metric_names if n.startswith("val_")]
        self._columns = ["epoch", "loss", *train]
        if info.validation_samples:
            self._columns += ["val_loss", *val]
        self._writer.writerow(self._columns)

    def epoch_finished(self, report) -> None:
        row = report.as_row()
        self._writer.writerow([row["epoch"]] + [_number(row.get(c)) for c in self._columns[1:]])
        self._file.flush()


def require_tensorboard() -> None:
    """Raises UserError when `tf.summary` cannot write (TF 2.21 no longer ships it)."""
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        raise UserError("TensorBoard logs need the 'tensorboard' package "
                        "(pip install tensorboard)") from None


class TensorBoardWriter(Reporter):
    """Writes TensorBoard scalars under `log_dir/train` and `log_dir/validation`."""

    def __init__(self, log_dir):
        require_tensorboard()
        import tensorflow as tf

        self.log_dir = Path(log_dir)
        try:
            self._train = tf.summary.create_file_writer(str(self.log_dir / "train"))
            self._val = tf.summary.create_file_writer(str(self.log_dir / "validation"))
        except Exception as exc:  # noqa: BLE001 - unwritable directory and the like
            raise UserError(f"{self.log_dir}: cannot write TensorBoard logs ({exc})") from None

    def run_started(self, info) -> None:
        import tensorflow as tf

        with self._train.as_default():
            tf.summary.text("run", "\n".join([f"data: {info.data}", f"loss: {info.losses}",
                                              f"optimizer: {info.optimizer}",
                                              f"feature cache: {info.feature_cache}"]), step=0)

    def step_finished(self, report) -> None:
        import tensorflow as tf

        with self._train.as_default(step=report.step):
            tf.summary.scalar("loss", report.loss)
            for path, norm in report.grad_norms.items():
                if norm is not None:
                    tf.summary.scalar(f"grad_norm/{path}", norm)

    def epoch_finished(self, report) -> None:
        import tensorflow as tf

        with self._train.as_default(step=report.epoch):
            tf.summary.scalar("epoch_loss", report.loss)
            for name, value in report.metrics.items():
                tf.summary.scalar(f"epoch_{name}", value)
        if report.val_loss is not None:
            with self._val.as_default(step=report.epoch):
                tf.summary.scalar("epoch_loss", report.val_loss)
                for name, value in report.val_metrics.items():
                    tf.summary.scalar(f"epoch_{name}", value)
        self._train.flush()
        self._val.flush()

    def run_finished(self, result) -> None:
        self._train.close()
        self._val.close()


def write_metrics_csv(path, info, steps, epochs=()) -> None:
    """Writes a finished (or stopped) run's metrics CSV, and its history CSV beside it
    when `epochs` are given, from the reports a reporter collected (e.g. a GUI's
    "Export metrics")."""
    writer = MetricsCsvWriter(path)
    history = HistoryCsvWriter(history_path_for(path)) if epochs else None
    try:
        for target in (writer, history):
            if target is not None:
                target.run_started(info)
        for report in steps:
            writer.step_finished(report)
        for report in epochs:
            history.epoch_finished(report)
    finally:
        writer.close()
        if history is not None:
            history.close()
