"""Multi-worker training: the cluster from `TF_CONFIG`, one `MultiWorkerMirroredStrategy`.

Every worker runs the same `freezestudio train --multi-worker ...` command with its own
`TF_CONFIG` (the variable Kubernetes, Vertex AI and the TF operator set):

    {"cluster": {"worker": ["host0:port", "host1:port"]},   # optionally "chief": [...]
     "task": {"type": "worker", "index": 0}}

`read_tf_config` checks it without importing TensorFlow. `start_multi_worker` then creates
the strategy before any other TensorFlow op (it configures the process's collective ops,
which TensorFlow refuses once its context exists), with the coordination service's
register timeout, so a worker that cannot reach the others fails with a `UserError`
instead of waiting forever. Collectives are NCCL where the workers have GPUs, else RING
(gRPC, the CPU implementation), with a timeout per collective too, so a peer that dies
mid-run ends the run.

The chief (the "chief" task, else worker 0) is the one whose output is the result;
`output_path` gives every other worker its own file beside it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from freezestudio.core.errors import UserError, first_line

DEFAULT_TIMEOUT_SECONDS = 120
_TASK_TYPES = ("chief", "worker")


@dataclass(frozen=True)
class ClusterTask:
    """This process's place in the cluster.

    Attributes:
        cluster: job name -> list of "host:port" addresses.
        task_type: "chief" or "worker".
        index: the task's index in its job.
    """

    cluster: dict
    task_type: str
    index: int

    @property
    def workers(self) -> int:
        """How many processes train (chief included)."""
        return sum(len(self.cluster.get(job, ())) for job in _TASK_TYPES)

    @property
    def is_chief(self) -> bool:
        """The chief task, or worker 0 of a cluster without one (TensorFlow's rule)."""
        if "chief" in self.cluster:
            return self.task_type == "chief"
        return self.task_type == "worker" and self.index == 0

    @property
    def address(self) -> str:
        return self.cluster[self.task_type][self.index]

    def describe(self) -> str:
        role = "the chief" if self.is_chief else "not the chief"
        return (f"{self.task_type} {self.index} ({self.address}, {role}) of {self.workers} "
                "workers")


def read_tf_config(environ=None) -> ClusterTask:
    """The cluster and this task from `TF_CONFIG`.

    Raises:
        UserError: TF_CONFIG is missing, not JSON, or does not describe a chief/worker
            task of a cluster of "host:port" addresses.
    """
    environ = os.environ if environ is None else environ
    text = environ.get("TF_CONFIG", "").strip()
    example = ('e.g. TF_CONFIG=\'{"cluster": {"worker": ["host0:12345", "host1:12345"]}, '
               '"task": {"type": "worker", "index": 0}}\'')
    if not text:
        raise UserError(f"--multi-worker needs the cluster in the TF_CONFIG variable ({example})")
    try:
        config = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise UserError(f"TF_CONFIG is not valid JSON: {first_line(exc)}") from None
    if not isinstance(config, dict) or not isinstance(config.get("cluster"), dict) or \
            not isinstance(config.get("task"), dict):
        raise UserError(f"TF_CONFIG needs a \"cluster\" and a \"task\" object ({example})")
    cluster = config["cluster"]
    for job, addresses in cluster.items():
        if not isinstance(addresses, list) or not addresses or \
                not all(isinstance(a, str) and _is_address(a) for a in addresses):
            raise UserError(f"TF_CONFIG cluster job '{job}' must be a list of \"host:port\" "
                            f"addresses, got {json.dumps(addresses)[:120]}")
    task = config["task"]
    task_type, index = task.get("type"), task.get("index", 0)
    if task_type not in _TASK_TYPES:
        raise UserError(f"TF_CONFIG task type {json.dumps(task_type)} cannot train with "
                        "--multi-worker (MultiWorkerMirroredStrategy runs 'chief' and "
                        "'worker' tasks)")
    if task_type not in cluster:
        raise UserError(f"TF_CONFIG task type '{task_type}' is not a job of its cluster "
                        f"({', '.join(cluster) or 'none'})")
    if not isinstance(index, int) or isinstance(index, bool) or \
            not 0 <= index < len(cluster[task_type]):
        raise UserError(f"TF_CONFIG task index {json.dumps(index)} is out of range: the "
                        f"'{task_type}' job has {len(cluster[task_type])} address(es)")
    if len(cluster.get("chief", ())) > 1:
        raise UserError("TF_CONFIG: a cluster has at most one chief")
    unknown = sorted(set(cluster) - {*_TASK_TYPES, "evaluator", "ps"})
    if unknown or "ps" in cluster:
        raise UserError(f"TF_CONFIG cluster job '{(unknown or ['ps'])[0]}' cannot train "
                        "with --multi-worker (only 'chief' and 'worker' jobs)")
    return ClusterTask({job: list(cluster[job]) for job in cluster if job in _TASK_TYPES},
                       task_type, index)


def _is_address(text: str) -> bool:
    host, _, port = text.rpartition(":")
    return bool(host) and port.isdigit() and 0 < int(port) < 65536


_STRATEGY: dict = {}


def start_multi_worker(task: ClusterTask, timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS):
    """Creates the process's MultiWorkerMirroredStrategy (once) and waits until every worker
    of the cluster is up; returns it.

    Must run before TensorFlow's context exists (before any op, device listing or model
    load); TensorFlow and Keras are imported here, with their start-up chatter muted.

    Raises:
        UserError: the cluster could not be formed within `timeout_seconds` (a worker is
            unreachable or not started), or TensorFlow was already initialised.
    """
    if "strategy" in _STRATEGY:
        return _STRATEGY["strategy"]
    from freezestudio.core.tf_import import import_tensorflow_quietly

    def create(tf):
        from tensorflow.python.eager import context

        if context.context()._context_handle is not None:
            raise UserError("--multi-worker: TensorFlow was initialised before the cluster "
                            "strategy could be created")
        milliseconds = int(timeout_seconds * 1000)
        context.context().configure_coordination_service(
            service_type="standalone", service_leader=_leader(task),
            cluster_register_timeout_in_ms=milliseconds,
            heartbeat_timeout_in_ms=max(milliseconds, 10_000),
            shutdown_barrier_timeout_in_ms=milliseconds,
            coordinated_jobs=_coordinated_jobs(task))
        kinds = tf.distribute.experimental.CommunicationImplementation
        # listing physical devices does not create the context
        options = tf.distribute.experimental.CommunicationOptions(
            implementation=kinds.NCCL if tf.config.list_physical_devices("GPU") else kinds.RING,
            timeout_seconds=timeout_seconds)
        resolver = tf.distribute.cluster_resolver.SimpleClusterResolver(
            tf.train.ClusterSpec(task.cluster), task_type=task.task_type,
            task_id=task.index, rpc_layer="grpc")
        try:
            _STRATEGY["strategy"] = tf.distribute.MultiWorkerMirroredStrategy(
                cluster_resolver=resolver, communication_options=options)
            _STRATEGY["task"] = task
        except Exception as exc:  # noqa: BLE001 - TensorFlow's errors vary by failure
            raise UserError(f"--multi-worker: {task.describe()} could not reach the other "
                            f"workers within {timeout_seconds:g} s ({first_line(exc, 160)}); "
                            "start every worker, check TF_CONFIG's addresses and ports") \
                from None

    try:
        import_tensorflow_quietly(before_context=create)
        if "strategy" not in _STRATEGY:  # TensorFlow and Keras were imported before
            import tensorflow as tf

            create(tf)
    except UserError:
        _divert_native_stderr()
        raise
    return _STRATEGY["strategy"]


def running_cluster():
    """`(ClusterTask, strategy)` of the cluster `start_multi_worker` joined.

    Raises:
        UserError: it did not run in this process.
    """
    if "strategy" not in _STRATEGY:
        raise UserError("multi-worker training needs the cluster to be started first "
                        "(start_multi_worker, before TensorFlow is used)")
    return _STRATEGY["task"], _STRATEGY["strategy"]


def _divert_native_stderr() -> None:
    """Python's stderr keeps the terminal, native code's (fd 2) goes to /dev/null: a failed
    coordination agent prints its error state when TensorFlow shuts down, which would
    come below the one-line error."""
    import sys

    sys.stderr.flush()
    sys.stderr = os.fdopen(os.dup(2), "w", buffering=1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)


def _leader(task: ClusterTask) -> str:
    job = "chief" if "chief" in task.cluster else "worker"
    return f"/job:{job}/replica:0/task:0"


def _coordinated_jobs(task: ClusterTask) -> list:
    from tensorflow.compiler.xla.tsl.protobuf import coordination_config_pb2

    return [coordination_config_pb2.CoordinatedJob(name=job, num_tasks=len(task.cluster[job]))
            for job in _TASK_TYPES if job in task.cluster]


def output_path(output: str | os.PathLike, task: ClusterTask) -> Path:
    """Where this worker saves: the chief at `output`, every other worker beside it with
    its task in the name (`model.keras` -> `model.worker-1.keras`), so workers sharing a
    file system never write the same file."""
    path = Path(output)
    if task.is_chief:
        return path
    return path.with_name(f"{path.stem}.{task.task_type}-{task.index}{path.suffix}")
