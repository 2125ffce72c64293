"""After a run: did exactly the weights that should learn change, bit for bit?

Every weight falls in one of three groups:
- received gradient (was handed to the optimizer): it should have changed;
- moving statistics of a BatchNormalization layer that runs in training mode (the layer
  is trainable): they move with every training step whatever the gradients do. Those of a
  layer that receives no gradient (upstream of a stop-gradient) are listed apart: a
  stop-gradient alone does not stop them (docs/architecture.md), freezing the layer does;
- everything else (frozen, or trainable but reached by no gradient): it must be
  bit-identical to before the run.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from freezestudio.core.training.adapter_integrity import check_adapters

BATCH_NORM_CLASSES = {"BatchNormalization", "SyncBatchNormalization"}
TRAINABLE_FROM_START = "trainable from epoch 1"


@dataclass
class WeightSnapshot:
    """Copies of every weight of a document, by weight id (for integrity and undo)."""

    values: dict

    @classmethod
    def take(cls, document) -> WeightSnapshot:
        return cls({w.id: np.array(w.variable.numpy(), copy=True) for w in document.weights})

    def restore(self, document) -> None:
        """Writes the copied values back into the document's variables."""
        for weight in document.weights:
            if weight.id in self.values:
                weight.variable.assign(self.values[weight.id])


@dataclass
class IntegrityReport:
    """Attributes:
        changed / unchanged: every weight id, by whether its value changed at all.
        frozen_changed: weights that should be bit-identical but changed (a violation).
        trained_unchanged: weights that received gradient but did not change (a warning:
            zero gradients, or a zero learning rate).
        moved_statistics: BatchNorm moving statistics of layers in training mode that moved.
        upstream_of_stop_gradient: the part of `moved_statistics` in layers that receive
            no gradient (cut off by a stop-gradient): freeze them to keep them fixed.
        adapters: one `AdapterCheck` per LoRA adapter (`adapter_integrity.py`): a
            computed-kernel change of higher rank than its factors allow is a violation.
        statistics_why: for every id of `moved_statistics`, why its layer ran in
            training mode ("trainable from epoch 1", "unfrozen from epoch 4 with
            batchnorm 'train'").
    """

    changed: list = field(default_factory=list)
    unchanged: list = field(default_factory=list)
    frozen_changed: list = field(default_factory=list)
    trained_unchanged: list = field(default_factory=list)
    moved_statistics: list = field(default_factory=list)
    upstream_of_stop_gradient: list = field(default_factory=list)
    adapters: list = field(default_factory=list)
    statistics_why: dict = field(default_factory=dict)
    checked_fixed: int = 0
    checked_trained: int = 0

    @property
    def ok(self) -> bool:
        return not self.frozen_changed and all(check.ok for check in self.adapters)

    def to_dict(self) -> dict:
        return {
            "ok": self.ok,
            "changed": self.changed,
            "unchanged": self.unchanged,
            "frozen_changed": self.frozen_changed,
            "trained_unchanged": self.trained_unchanged,
            "moved_statistics": self.moved_statistics,
            "upstream_of_stop_gradient": self.upstream_of_stop_gradient,
            "adapters": [check.to_dict() for check in self.adapters],
            "moved_statistics_why": self.statistics_why,
        }

    def summary_lines(self) -> list[str]:
        """A few lines for the user (CLI report, GUI panel)."""
        lines = [f"integrity: {self.checked_fixed - len(self.frozen_changed)} of "
                 f"{self.checked_fixed} frozen/no-gradient weights bit-identical, "
                 f"{self.checked_trained - len(self.trained_unchanged)} of "
                 f"{self.checked_trained} trained weights changed"]
        if self.frozen_changed:
            lines.append(f"  VIOLATION: weights that should be fixed changed: "
                         f"{_few(self.frozen_changed)}")
        if self.trained_unchanged:
            lines.append(f"  warning: weights that received gradient did not change: "
                         f"{_few(self.trained_unchanged)}")
        if self.upstream_of_stop_gradient:
            lines.append(f"  note: BatchNorm moving statistics upstream of a stop-gradient "
                         f"moved (the layer runs in training mode; freeze it to keep them): "
                         f"{_few(self.upstream_of_stop_gradient)}")
        if self.adapters:
            moved = [check.id for check in self.adapters if check.moved]
            lines.append(f"  LoRA: {len(moved)} of {len(self.adapters)} adapters moved"
                         + (f" ({_few(moved)})" if moved else ""))
        broken = [f"{c.id} (rank {c.change_rank} > {c.rank_bound})"
                  for c in self.adapters if not c.ok]
        if broken:
            lines.append(f"  VIOLATION: kernel changes not explained by their adapters: "
                         f"{_few(broken)}")
        others = len(self.moved_statistics) - len(self.upstream_of_stop_gradient)
        if others:
            lines.append(f"  {others} BatchNorm moving statistics of trained layers moved "
                         "(expected)")
        reasons: dict = {}
        for weight_id, why in self.statistics_why.items():
            if why != TRAINABLE_FROM_START:
                reasons.setdefault(why, []).append(weight_id)
        for why, ids in reasons.items():
            lines.append(f"  BatchNorm statistics moved ({why}): {_few(ids)}")
        return lines


def _few(ids: list, n: int = 4) -> str:
    return ", ".join(ids[:n]) + (f" and {len(ids) - n} more" if len(ids) > n else "")


def is_moving_statistic(document, weight) -> bool:
    """A BatchNorm moving statistic of a layer that runs in training mode (trainable)."""
    return (not weight.freezable and weight.layer.class_name in BATCH_NORM_CLASSES
            and document.layer_flag(weight.layer))


def check_integrity(document, before: WeightSnapshot, received: set,
                    training_mode: dict | None = None) -> IntegrityReport:
    """Compares the document's weights with `before`.

    Args:
        document: after the run.
        before: the snapshot taken before the run.
        received: ids of the weights that received gradient (given to the optimizer).
        training_mode: BatchNorm layer path -> why it ran in training mode during the
            run (a schedule's stages); None: the layers the document keeps trainable.
    """
    report = IntegrityReport()
    for weight in document.weights:
        old = before.values.get(weight.id)
        if old is None:
            continue
        new = np.asarray(weight.variable.numpy())
        same = old.shape == new.shape and old.tobytes() == new.tobytes()
        (report.unchanged if same else report.changed).append(weight.id)
        if weight.id in received:
            report.checked_trained += 1
            if same:
                report.trained_unchanged.append(weight.id)
        elif _moving(document, weight, training_mode):
            if not same:
                report.moved_statistics.append(weight.id)
                report.statistics_why[weight.id] = (training_mode or {}).get(
                    weight.layer.path, TRAINABLE_FROM_START)
                if document.receives_gradient(weight.layer) is False:
                    report.upstream_of_stop_gradient.append(weight.id)
        else:
            report.checked_fixed += 1
            if not same:
                report.frozen_changed.append(weight.id)
    report.adapters = check_adapters(document, before.values)
    return report


def _moving(document, weight, training_mode: dict | None) -> bool:
    if training_mode is None:
        return is_moving_statistic(document, weight)
    return (not weight.freezable and weight.layer.class_name in BATCH_NORM_CLASSES
            and weight.layer.path in training_mode)
