"""A document's fine-tuning strategy: per-layer learning-rate multipliers and a
gradual-unfreezing schedule (docs/architecture.md, Plan file: `lr_multipliers`, `schedule`).

Values here are immutable and hold rules as given (a glob and a value, applied in
order, later wins); resolving them against a model's addresses is the training
engine's job (`core/training/lr_groups.py`, `core/training/stages.py`). The document
keeps one `FineTuning` (undoable like its freeze state) and saves write it into the
stored plan, so it replays.
"""

from __future__ import annotations

from dataclasses import dataclass

BN_FROZEN = "frozen"
BN_TRAIN = "train"
BATCHNORM_POLICIES = (BN_FROZEN, BN_TRAIN)


@dataclass(frozen=True)
class Stage:
    """One schedule stage: from `from_epoch` (1-based) on, its `trainable` and
    `lr_multipliers` rules apply on top of the state so far.

    Attributes:
        from_epoch: the first epoch of the stage (stages are in increasing order).
        trainable: `(glob, bool)` rules.
        lr_multipliers: `(glob, value > 0)` rules.
        batchnorm: "frozen" (BatchNormalization layers this stage unfreezes stay
            frozen, in inference mode) or "train".
    """

    from_epoch: int
    trainable: tuple[tuple[str, bool], ...] = ()
    lr_multipliers: tuple[tuple[str, float], ...] = ()
    batchnorm: str = BN_FROZEN

    def to_dict(self) -> dict:
        return {"from_epoch": self.from_epoch,
                "trainable": [{"match": m, "value": v} for m, v in self.trainable],
                "lr_multipliers": [{"match": m, "value": v} for m, v in self.lr_multipliers],
                "batchnorm": self.batchnorm}

    def describe(self) -> str:
        """One line for the user: what the stage changes."""
        parts = [f"{'unfreeze' if v else 'freeze'} {m}" for m, v in self.trainable]
        parts += [f"LR x{v:g} on {m}" for m, v in self.lr_multipliers]
        if any(v for _, v in self.trainable):
            parts.append(f"BatchNorm {self.batchnorm}")
        return ", ".join(parts) or "no change"


@dataclass(frozen=True)
class FineTuning:
    """Attributes:
        lr_multipliers: `(glob, value > 0)` rules from epoch 1 (default 1 everywhere).
        schedule: the stages, by increasing `from_epoch`.
    """

    lr_multipliers: tuple[tuple[str, float], ...] = ()
    schedule: tuple[Stage, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.lr_multipliers or self.schedule)

    def with_multipliers(self, rules) -> FineTuning:
        """These rules added after the current ones; a rule for a glob already present
        replaces it (the later rule for the same glob wins anyway)."""
        rules = [(m, float(v)) for m, v in rules]
        new = {m for m, _ in rules}
        kept = [r for r in self.lr_multipliers if r[0] not in new]
        return FineTuning(tuple(kept + rules), self.schedule)

    def with_schedule(self, stages) -> FineTuning:
        return FineTuning(self.lr_multipliers, tuple(stages))
