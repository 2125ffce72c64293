"""`freezestudio train FILE --data DATA -o OUT ...`: fine-tune headless and save the result.

Prints the chosen loss, one line per epoch (and one per schedule stage, when it starts),
the integrity report and where the model was saved; a progress bar (steps, loss, ETA)
goes to stderr when it is a terminal. With `--json`, stdout holds only one JSON object
(`steps`, `seconds`, `steps_per_second`, `final_loss`, `integrity`, `stages`, ...). A run
that diverges (NaN/Inf) or whose data fail is not saved: exit 2 with one
`freezestudio: error:` line.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from freezestudio.commands.common import (
    add_edit_options,
    add_merge_lora_option,
    add_model_options,
    open_edited_document,
)
from freezestudio.commands.exit_codes import ExitCode
from freezestudio.core.diagnostics.log_file import record_failure
from freezestudio.core.errors import UserError
from freezestudio.core.training.config import Reporter

HELP = "fine-tune the model on data (per-layer gradient norms, integrity check) and save it"
_OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop")


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise UserError(f"--validation-split: '{text}' is not a number") from None
    if not 0 <= value < 1:
        raise UserError(f"--validation-split must be in [0, 1) (0 = no validation), got {text}")
    return value


def _positive_int(text: str) -> int:
    """argparse type: a whole number >= 1 (argparse names the option in the error)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text}")
    return value


def configure(parser) -> None:
    add_model_options(parser)
    add_edit_options(parser)
    add_merge_lora_option(parser)
    parser.add_argument("--data", required=True, metavar="DATA",
                        help=".npz (x, y[, x_val, y_val] or one array per input name), .csv "
                             "(numeric, see --target), a folder of class sub-folders of "
                             "images, or 'demo' for the bundled demo data")
    parser.add_argument("-o", "--output", required=True,
                        help="where to save the trained model (.keras or .h5)")
    parser.add_argument("--target", metavar="COLUMN", help="CSV label column (default: last)")
    parser.add_argument("--epochs", type=_positive_int, default=1)
    parser.add_argument("--batch-size", type=_positive_int, default=32)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--optimizer", choices=_OPTIMIZERS, default="adam")
    parser.add_argument("--weight-decay", type=float, default=None,
                        help="decoupled weight decay of adamw (default 0.004)")
    parser.add_argument("--schedule", choices=("constant", "cosine", "step"),
                        default="constant", help="learning-rate schedule")
    parser.add_argument("--loss", metavar="NAME",
                        help="Keras loss name (default: from the model's compile config or "
                             "its output activation and the labels)")
    parser.add_argument("--validation-split", type=_fraction, metavar="F",
                        help="hold out this fraction for validation (0 = none; default: the "
                             "data's own validation arrays, if any)")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--cache-features", choices=("auto", "on", "off"), default="auto",
                        help="cache the outputs of a frozen, cut-off prefix (auto: when exact)")
    parser.add_argument("--metrics-csv", metavar="PATH",
                        help="per-step loss and per-layer gradient norms (and PATH.epochs.csv "
                             "with the per-epoch history)")
    parser.add_argument("--log-dir", metavar="DIR", help="write TensorBoard event files here")
    parser.add_argument("--device", metavar="NAME",
                        help="e.g. cpu, gpu, /GPU:1, gpu:all or a comma-separated list")
    parser.add_argument("--mixed-precision", action="store_true",
                        help="float16 on GPU (loss scaling), bfloat16 on CPU")
    parser.add_argument("--jit-compile", choices=("auto", "on", "off"), default="auto",
                        help="compile the step with XLA (auto: as Keras's fit, on with a GPU "
                             "and no distribute strategy)")
    parser.add_argument("--multi-worker", action="store_true",
                        help="train synchronously on the cluster in TF_CONFIG "
                             "(MultiWorkerMirroredStrategy; run the same command on every "
                             "worker; --batch-size is the global batch)")
    parser.add_argument("--cluster-timeout", type=_positive_int, default=None,
                        metavar="SECONDS", help="--multi-worker: how long to wait for the "
                        "other workers, and for each collective step (default 120)")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object (and nothing else) on stdout")


def run(args) -> int:
    from freezestudio.core.data import load_data
    from freezestudio.core.files.saving import format_for_target, save_document
    from freezestudio.core.model.signature import model_io
    from freezestudio.core.training.config import (
        CANCELLED,
        COMPLETED,
        FAILED,
        MultiReporter,
        TrainingConfig,
    )
    from freezestudio.core.training.run_logs import (
        HistoryCsvWriter,
        MetricsCsvWriter,
        TensorBoardWriter,
        history_path_for,
        require_tensorboard,
    )
    from freezestudio.core.training.trainer import Trainer

    if args.cluster_timeout is not None and not args.multi_worker:
        raise UserError("--cluster-timeout applies to --multi-worker only")
    task, notes = _join_cluster(args) if args.multi_worker else (None, [])
    if args.weight_decay is not None and args.optimizer != "adamw":
        raise UserError(f"--weight-decay applies to --optimizer adamw only ({args.optimizer} "
                        "has no weight decay here)")
    if args.log_dir:
        require_tensorboard()
    document = open_edited_document(args)
    format_for_target(document, Path(args.output))  # refuse a bad target before training
    data = load_data(args.data, model_io(document), target=args.target,
                     validation_split=args.validation_split, seed=args.seed,
                     model_path=args.file)
    config = TrainingConfig(
        epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.learning_rate,
        optimizer=args.optimizer, schedule=args.schedule,
        **({} if args.weight_decay is None else {"weight_decay": args.weight_decay}),
        loss=args.loss, seed=args.seed, cache_features=args.cache_features,
        device=args.device, mixed_precision=args.mixed_precision,
        jit_compile=args.jit_compile, multi_worker=args.multi_worker)
    trainer = Trainer(document, data, config)
    trainer.prepare()  # every setup error before any log file is created
    writers = []
    if args.metrics_csv:
        writers += [MetricsCsvWriter(args.metrics_csv),
                    HistoryCsvWriter(history_path_for(args.metrics_csv))]
    if args.log_dir:
        writers.append(TensorBoardWriter(args.log_dir))
    console = _Console(quiet=args.json, bar=sys.stderr.isatty() and not args.json)
    for note in notes:
        console._out(f"note: {note}")
    result = trainer.run(MultiReporter(console, *writers))
    summary = result.to_dict()
    if task is not None:
        summary["worker"] = {"type": task.task_type, "index": task.index,
                             "workers": task.workers, "chief": task.is_chief}
    saved = None
    if result.status == COMPLETED:
        report = save_document(document, args.output, merge_lora=args.merge_lora)
        saved = str(report.path)
        summary["notes"] += report.notes
    summary["output"] = saved
    if args.json:
        print(json.dumps(summary))
    else:
        console.finish(result, saved, summary.get("notes", ()),
                       integrity=task is None or task.is_chief)
    if result.status == COMPLETED:
        if not result.integrity.ok:
            print(f"freezestudio: integrity violation: frozen weights changed: "
                  f"{', '.join(result.integrity.frozen_changed[:5])}", file=sys.stderr)
            return ExitCode.INTEGRITY
        return ExitCode.OK
    if result.status == CANCELLED:
        print(f"freezestudio: {result.message}; nothing was saved", file=sys.stderr)
        return ExitCode.INTERRUPTED
    if result.status == FAILED and result.details:
        log = record_failure(result.details, f"freezestudio train {args.file}")
        where = f"details in {log}" if log else "no log file could be written"
        print(f"freezestudio: error: training {result.message}; nothing was saved ({where})",
              file=sys.stderr)
        return ExitCode.USER_ERROR
    print(f"freezestudio: error: training stopped: {result.message}; nothing was saved",
          file=sys.stderr)
    return ExitCode.USER_ERROR


def _join_cluster(args):
    """Checks what cannot run distributed, then joins the TF_CONFIG cluster (before
    anything else uses TensorFlow). Points this worker's output at its own file and
    returns `(ClusterTask, notes)`.

    Raises:
        UserError: an option that cannot run distributed, a bad TF_CONFIG, a cluster that
            could not be formed in time.
    """
    from freezestudio.core.training.cluster import (
        DEFAULT_TIMEOUT_SECONDS,
        output_path,
        read_tf_config,
        start_multi_worker,
    )

    for given, option in ((args.device, "--device"),
                          (args.jit_compile == "on", "--jit-compile on")):
        if given:
            raise UserError(f"{option} cannot run with --multi-worker (each worker trains "
                            "on all its GPUs, else its CPU, without XLA)")
    task = read_tf_config()
    notes = []
    if args.seed is None:
        args.seed = 0
        notes.append("multi-worker: every worker shuffles and splits with seed 0 "
                     "(--seed chooses another)")
    start_multi_worker(task, args.cluster_timeout or DEFAULT_TIMEOUT_SECONDS)
    if not task.is_chief:
        args.output = str(output_path(args.output, task))
        notes.append(f"multi-worker: this worker saves its copy to {args.output}; the "
                     "chief's output is the result")
        if args.metrics_csv or args.log_dir:
            args.metrics_csv = args.log_dir = None
            notes.append("multi-worker: the metrics CSV and TensorBoard logs are the chief's")
    return task, notes


class _Console(Reporter):
    """Epoch lines on stdout, a progress bar on stderr (a terminal only)."""

    def __init__(self, quiet: bool, bar: bool):
        self.quiet, self.bar, self.info, self._last = quiet, bar, None, 0.0

    def _out(self, text: str) -> None:
        if not self.quiet:
            self._clear()
            print(text, flush=True)

    def _clear(self) -> None:
        if self.bar:
            sys.stderr.write("\r\033[K")

    def run_started(self, info) -> None:
        self.info = info
        self._out(f"data: {info.data}")
        for loss in info.losses:
            self._out(f"loss: {loss}")
        self._out(f"optimizer: {info.optimizer}; device: {info.device}; {info.xla}")
        self._out(f"feature cache: {info.feature_cache}")
        self._out(f"gradient reaches {len(info.receiving_layers)} of {len(info.layer_paths)} "
                  f"layers with weights; {info.total_steps} steps "
                  f"({info.epochs} x {info.steps_per_epoch})")
        for note in info.notes:
            self._out(f"note: {note}")

    def stage_started(self, report) -> None:
        self._out(report.description)

    def step_finished(self, report) -> None:
        import time

        now = time.monotonic()
        if not self.bar or (now - self._last < 0.1 and report.step != self.info.total_steps):
            return
        self._last = now
        total = self.info.total_steps
        filled = int(24 * report.step / total)
        eta = report.eta_seconds
        eta_text = f"{int(eta // 60)}:{int(eta % 60):02d}" if eta != float("inf") else "?"
        sys.stderr.write(f"\r\033[K[{'#' * filled}{'.' * (24 - filled)}] step {report.step}/"
                         f"{total} epoch {report.epoch}/{self.info.epochs} loss "
                         f"{report.loss:.4f} {report.steps_per_second:.1f} steps/s "
                         f"ETA {eta_text}")
        sys.stderr.flush()

    def epoch_finished(self, report) -> None:
        parts = [f"loss {report.loss:.4f}"] + [f"{k} {v:.4f}" for k, v in report.metrics.items()]
        if report.val_loss is not None:
            parts += [f"val_loss {report.val_loss:.4f}"] + \
                [f"val_{k} {v:.4f}" for k, v in report.val_metrics.items()]
        self._out(f"epoch {report.epoch}/{self.info.epochs}: {'  '.join(parts)} "
                  f"({report.seconds:.1f} s)")

    def run_finished(self, result) -> None:
        self._clear()

    def finish(self, result, saved, notes=(), integrity: bool = True) -> None:
        loss = f"{result.final_loss:.4f}" if result.final_loss is not None else "-"
        self._out(f"{result.status}: {result.steps} steps in {result.seconds:.1f} s "
                  f"({result.steps_per_second:.1f} steps/s), final loss {loss}")
        if result.integrity is not None and integrity:  # multi-worker: the chief's report
            for line in result.integrity.summary_lines():
                self._out(line)
        for note in notes:  # the run's (XLA) and the save report's (compile config)
            self._out(f"note: {note}")
        if saved:
            self._out(f"saved {saved}")
