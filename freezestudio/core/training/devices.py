"""Devices: list them, pick one (or several), GPU memory growth, mixed precision.

A device name is what TensorFlow calls a logical device (`/CPU:0`, `/GPU:1`), case and the
leading slash optional. `select_devices` also takes `cpu`, `gpu` (the first of the kind),
`gpu:all` and comma-separated lists; several devices train under
`tf.distribute.MirroredStrategy`. A multi-worker run (`cluster.py`) trains under the
process's MultiWorkerMirroredStrategy, on every GPU of each worker (else its CPU).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np

from freezestudio.core.errors import UserError


@dataclass(frozen=True)
class DeviceInfo:
    name: str
    kind: str


@dataclass
class Placement:
    """Where a run executes.

    Attributes:
        devices: logical device names.
        strategy: a MirroredStrategy for several devices, else None.
    """

    devices: list
    strategy: object = None
    label: str = ""

    @property
    def distributed(self) -> bool:
        return self.strategy is not None

    @property
    def has_gpu(self) -> bool:
        return any("GPU" in d.upper() for d in self.devices)

    def scope(self):
        """The context to build and run the model in."""
        import tensorflow as tf

        if self.strategy is not None:
            return self.strategy.scope()
        if self.devices:
            return tf.device(self.devices[0])
        return contextlib.nullcontext()

    def distribute(self, dataset):
        """`dataset` as the strategy's replicas take it (unchanged on one device): each
        global batch split across the replicas; across workers sharded by data (every
        worker reads it all in the same seeded order and keeps its share of each batch:
        arrays have no files to shard by)."""
        if self.strategy is None:
            return dataset
        import tensorflow as tf

        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = \
            tf.data.experimental.AutoShardPolicy.DATA
        return self.strategy.experimental_distribute_dataset(dataset.with_options(options))

    def describe(self) -> str:
        if self.label:
            return self.label
        if self.strategy is not None:
            return f"MirroredStrategy over {', '.join(self.devices)}"
        return self.devices[0] if self.devices else "default device"


def enable_memory_growth() -> list[str]:
    """Lets every GPU allocate memory as needed instead of grabbing it all (call it before
    anything runs on a GPU). Returns the GPUs it could set; a GPU already initialised keeps
    its setting. (`tf_import.import_tensorflow_quietly` sets TF_FORCE_GPU_ALLOW_GROWTH,
    which does the same for every GPU before TensorFlow probes its devices.)"""
    import tensorflow as tf

    done = []
    for gpu in tf.config.list_physical_devices("GPU"):
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
            done.append(gpu.name)
        except (RuntimeError, ValueError):
            pass
    return done


def list_devices() -> list[DeviceInfo]:
    """The logical CPUs and GPUs TensorFlow can run on."""
    import tensorflow as tf

    return [DeviceInfo(_canonical(d.name), d.device_type) for d in tf.config.list_logical_devices()
            if d.device_type in ("CPU", "GPU")]


def _canonical(name: str) -> str:
    """`/job:localhost/replica:0/task:0/device:CPU:0` or `cpu:0` -> `/CPU:0`."""
    tail = name.split("device:")[-1].lstrip("/")
    kind, _, index = tail.partition(":")
    return f"/{kind.upper()}:{index or 0}"


def select_devices(spec: str | None, multi_worker: bool = False) -> Placement:
    """A Placement for a device spec (None or "auto": TensorFlow's default placement), or
    with `multi_worker` the process's MultiWorkerMirroredStrategy (`spec` must be None).

    Raises:
        UserError: a named device does not exist (the message lists those that do); a
            device spec with `multi_worker`; `multi_worker` before the cluster started.
    """
    if multi_worker:
        return _multi_worker(spec)
    if spec is None or spec.strip().lower() in ("", "auto"):
        return Placement([])
    available = [d.name for d in list_devices()]
    wanted = []
    for part in (p.strip() for p in spec.split(",") if p.strip()):
        kind = part.lower().lstrip("/")
        if kind in ("cpu", "gpu"):
            matches = [d for d in available if d.startswith(f"/{kind.upper()}:")][:1]
        elif kind in ("gpu:all", "cpu:all"):
            matches = [d for d in available if d.startswith(f"/{kind[:3].upper()}:")]
        else:
            name = _canonical(part)
            matches = [name] if name in available else []
        if not matches:
            raise UserError(f"no device '{part}'; available: {', '.join(available)}")
        wanted += [m for m in matches if m not in wanted]
    if len(wanted) == 1:
        return Placement(wanted)
    return Placement(wanted, _mirrored(tuple(wanted)))


def _multi_worker(spec: str | None) -> Placement:
    from freezestudio.core.training.cluster import running_cluster

    if spec is not None and spec.strip().lower() not in ("", "auto"):
        raise UserError("--device cannot be combined with --multi-worker (each worker "
                        "trains on all its GPUs, else its CPU)")
    task, strategy = running_cluster()
    devices = [_canonical(d) for d in strategy.extended.worker_devices]
    label = (f"MultiWorkerMirroredStrategy, {task.describe()}, {strategy.num_replicas_in_sync}"
             f" replicas in sync ({', '.join(devices)} here); --batch-size is the global "
             "batch, split across the replicas")
    return Placement(devices, strategy, label)


_STRATEGIES: dict = {}


def _mirrored(devices: tuple):
    """One MirroredStrategy per device set for the whole process: a second strategy over
    the same devices starts its collective keys where the first did, and its all-reduces
    then clash with the first one's cached instances ("Shape mismatch in the collective")."""
    import tensorflow as tf

    if devices not in _STRATEGIES:
        _STRATEGIES[devices] = tf.distribute.MirroredStrategy(list(devices))
    return _STRATEGIES[devices]


def mixed_precision_policy(placement: Placement) -> str:
    """`mixed_float16` on GPUs (with loss scaling), `mixed_bfloat16` on CPUs."""
    if placement.has_gpu:
        return "mixed_float16"
    if not placement.devices:
        import tensorflow as tf

        if tf.config.list_logical_devices("GPU"):
            return "mixed_float16"
    return "mixed_bfloat16"


def apply_policy(model, policy: str):
    """Sets a dtype policy on every layer of a built model (variables stay float32, the
    computation runs in the policy's compute dtype). Returns a function undoing it."""
    import keras

    saved, seen = [], set()

    def visit(layer):
        if id(layer) in seen:
            return
        seen.add(id(layer))
        if type(layer).__name__ != "InputLayer" and hasattr(layer, "dtype_policy"):
            saved.append((layer, layer.dtype_policy))
            layer.dtype_policy = keras.DTypePolicy(policy)
        for sub in getattr(layer, "_layers", []):
            visit(sub)

    visit(model)

    def restore():
        for layer, old in saved:
            layer.dtype_policy = old
    return restore


def replicate_model(model, strategy):
    """A copy of `model` whose variables live on the strategy's devices, and the mapping
    `id(original variable) -> replica variable`."""
    import keras

    with strategy.scope():
        clone = keras.models.clone_model(model)
    originals, copies = model.weights, clone.weights
    # by name and shape, in order: a clone's paths can differ (a loaded Sequential's own
    # layers' variables gain the model's name as a prefix in the copy)
    if len(originals) != len(copies) or any(
            a.name != b.name or tuple(a.shape) != tuple(b.shape)
            for a, b in zip(originals, copies, strict=True)):
        raise UserError("this model cannot be replicated over several devices "
                        "(its copy has different weights); train it on one device")
    for original, copy in zip(originals, copies, strict=True):
        copy.assign(original.numpy())
        copy.trainable = original.trainable
    return clone, {id(a): b for a, b in zip(originals, copies, strict=True)}


def replica_values(strategy, originals, mapping: dict, synchronized) -> list:
    """The values a run on replicas leaves, one array per variable of `originals`.

    A variable in `synchronized` (those receiving gradient: their updates are all-reduced)
    is the same on every replica. Any other replica variable that differs from its
    original (BatchNorm moving statistics: each replica updates them from its own share
    of the batch) is averaged over all replicas of all workers (one collective, which
    every worker runs, on the same variables: they change alike on every worker), so
    every worker ends with the same model; an exponential moving average is linear, so
    the mean at the end equals averaging after every step. The rest (frozen weights) are
    returned as they are, bit for bit.

    Args:
        mapping: `id(original variable) -> replica variable` (from `replicate_model`).
    """
    import tensorflow as tf

    clones = [mapping[id(v)] for v in originals]
    values = [c.numpy() for c in clones]
    fixed = {id(v) for v in synchronized}
    moved = [i for i, (clone, original) in enumerate(zip(clones, originals, strict=True))
             if id(clone) not in fixed and not np.array_equal(values[i], original.numpy())]
    if moved:
        @tf.function(autograph=False)
        def averaged():
            local = strategy.run(lambda: [tf.identity(clones[i]) for i in moved])
            return [strategy.reduce(tf.distribute.ReduceOp.MEAN, v, axis=None) for v in local]

        for i, value in zip(moved, averaged(), strict=True):
            values[i] = value.numpy()
    return values
