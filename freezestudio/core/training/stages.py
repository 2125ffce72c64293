"""Gradual unfreezing: the stages of a run's schedule, all decided before the first step.

Stage 0 is the document's own edit state (epoch 1 on). Each schedule stage applies its
`trainable` rules and then its `lr_multipliers` rules on top of the state so far, on a
detached copy of the document (`Document.detached_copy`), so the user's document, its
listeners and its undo history never see the stages. Under the BatchNorm policy
`"frozen"` (the default) every BatchNormalization layer the stage's rules unfreeze is
frozen again right after (inference mode, statistics fixed); `"train"` leaves them
trainable, so they normalise with batch statistics and their moving statistics move.

For every stage the engine keeps the copy's snapshot (re-installed when the stage
starts: that writes the stage's `trainable` flags into the shared Keras objects), the
set of variables that receive gradient with their multipliers, each variable's
*cohort* (the stage it started receiving gradient in: optimizer state is per cohort,
`lr_groups`), and a fresh feature-cache decision: a prefix that was frozen may be
trained from this stage on, and then it is no longer cached.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from freezestudio.core.edits.fine_tuning import resolve_multipliers
from freezestudio.core.edits.plans import matching_nodes
from freezestudio.core.errors import UserError
from freezestudio.core.model.fine_tuning import BN_FROZEN, Stage
from freezestudio.core.training.feature_cache import CachePlan
from freezestudio.core.training.integrity import BATCH_NORM_CLASSES, TRAINABLE_FROM_START


@dataclass
class StagePlan:
    """One stage of a run.

    Attributes:
        index: 0 for the epoch-1 state, k for the schedule's k-th stage.
        from_epoch: its first epoch.
        stage: the schedule's Stage (None for stage 0).
        snapshot: the edit state during the stage.
        trainables: `setup.Trainables` of the stage.
        cohorts: per variable of `trainables`, the index of the stage it started
            receiving gradient in (without a break since).
        unfrozen, frozen: layers (with weights) that start / stop receiving gradient.
        kept_frozen: BatchNormalization layers the stage unfroze and its policy froze.
        bn_training: BatchNormalization layers that run in training mode in the stage.
    """

    index: int
    from_epoch: int
    stage: Stage | None
    snapshot: object
    trainables: object
    cohorts: list
    unfrozen: list = field(default_factory=list)
    frozen: list = field(default_factory=list)
    kept_frozen: list = field(default_factory=list)
    bn_training: list = field(default_factory=list)

    def to_dict(self) -> dict:
        """The `stages` entry of `train --json`: the epoch and what changed."""
        return {
            "epoch": self.from_epoch,
            "changes": self.stage.describe() if self.stage else "the epoch-1 state",
            "unfrozen": self.unfrozen,
            "frozen": self.frozen,
            "batchnorm": self.stage.batchnorm if self.stage else None,
            "batchnorm_kept_frozen": self.kept_frozen,
            "receiving_layers": len(self.trainables.receiving_layers),
            "lr_groups": sorted({m for m in self.trainables.multipliers}),
            "feature_cache": self.trainables.cache.reason,
        }

    def describe(self) -> str:
        """One line for logs and the console."""
        text = f"stage from epoch {self.from_epoch}: " + (
            self.stage.describe() if self.stage else "the epoch-1 state")
        if self.kept_frozen:
            text += f" ({len(self.kept_frozen)} BatchNorm layer(s) kept frozen)"
        return text + (f"; gradient reaches {len(self.trainables.receiving_layers)} "
                       f"layer(s); feature cache: {self.trainables.cache.reason}")


def _bn_layers(document) -> list:
    return [n for n in document.root.walk() if n.class_name in BATCH_NORM_CLASSES]


def plan_stages(document, epochs: int, trainables_for, base) -> tuple[list, object]:
    """Every stage of `document`'s schedule that starts within `epochs`, and the
    detached copy of the document that the stages' snapshots are restored into (None
    without a schedule).

    Args:
        document: the run's document (its flags are written back before returning).
        trainables_for: `(document copy, multipliers, stage index) -> Trainables`.
        base: the Trainables of stage 0.

    Raises:
        PlanError: a stage's glob matches nothing.
    """
    schedule = document.fine_tuning.schedule
    multipliers = resolve_multipliers(document, document.fine_tuning.lr_multipliers)
    plans = [StagePlan(0, 1, None, document.snapshot(), base, [0] * len(base.variables),
                       bn_training=[n.path for n in _bn_layers(document)
                                    if document.layer_flag(n)])]
    if not schedule:
        return plans, None
    copy = document.detached_copy()
    columns = [node for node in document.root.walk() if node.weights]
    try:
        for index, stage in enumerate(schedule, 1):
            if stage.from_epoch > epochs:
                break
            plans.append(_next_stage(copy, columns, stage, index, plans[-1], multipliers,
                                     trainables_for))
            multipliers = resolve_multipliers(copy, stage.lr_multipliers, multipliers)
    finally:
        document.write_flags()
    return plans, copy


def _next_stage(copy, columns, stage: Stage, index: int, previous: StagePlan,
                multipliers: dict, trainables_for) -> StagePlan:
    bn_before = {n.path: copy.layer_flag(n) for n in _bn_layers(copy)}
    receiving_before = {n.path: copy.receives_gradient(n) for n in columns}
    for pattern, value in stage.trainable:
        copy.set_trainable(matching_nodes(copy, pattern), value)
    kept = []
    if stage.batchnorm == BN_FROZEN:
        kept = [n for n in _bn_layers(copy) if not bn_before[n.path] and copy.layer_flag(n)]
        if kept:
            copy.set_trainable(kept, False)
    multipliers = resolve_multipliers(copy, stage.lr_multipliers, multipliers)
    trainables = trainables_for(copy, multipliers, index)
    was = {id(v): c for v, c in zip(previous.trainables.variables, previous.cohorts,
                                    strict=True)}
    cohorts = [was.get(id(v), index) for v in trainables.variables]
    return StagePlan(
        index, stage.from_epoch, stage, copy.snapshot(), trainables, cohorts,
        unfrozen=[n.path for n in columns if receiving_before[n.path] is not True
                  and copy.receives_gradient(n) is not False],
        frozen=[n.path for n in columns if receiving_before[n.path] is not False
                and copy.receives_gradient(n) is False],
        kept_frozen=[n.path for n in kept],
        bn_training=[n.path for n in _bn_layers(copy) if copy.layer_flag(n)])


def later_cache(make_plan) -> CachePlan:
    """The cache decision of a later stage: "on" that finds nothing to cache there
    trains without a cache (the run already started with one)."""
    try:
        return make_plan()
    except UserError as exc:
        return CachePlan(False, False, str(exc).removeprefix("--cache-features on: "))


def statistics_reasons(stages: list) -> dict:
    """BatchNorm layer path -> why it ran in training mode (its moving statistics
    move), for the integrity report."""
    reasons: dict = {}
    for plan in stages:
        for path in plan.bn_training:
            reasons.setdefault(path, TRAINABLE_FROM_START if plan.index == 0 else
                               f"unfrozen from epoch {plan.from_epoch} with batchnorm "
                               f"'{plan.stage.batchnorm}'")
    return reasons
