"""What a document tells its listeners after an edit, and its undo snapshots."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from freezestudio.core.model.fine_tuning import FineTuning


class ChangeKind(str, Enum):
    """What an edit changed (a view redraws only what depends on it)."""

    TRAINABLE = "trainable"  # freeze flags: trainable state, receives gradient, counts
    POINTS = "points"  # stop-gradient points: the graph, receives gradient
    WEIGHTS = "weights"  # weight values (a training run, its undo): statistics
    ADAPTERS = "adapters"  # LoRA adapters added/removed: weight rows of those layers
    FINE_TUNING = "fine_tuning"  # learning-rate multipliers, the unfreezing schedule

    __str__ = str.__str__
    __format__ = str.__format__


@dataclass(frozen=True)
class DocumentChange:
    """One notification: the kind of change and the nodes it was made on (empty: the
    whole document, e.g. after an undo). A freeze of a container also changes what is
    inside it and the aggregates of its ancestors."""

    kind: ChangeKind
    nodes: tuple = ()


@dataclass(frozen=True)
class Snapshot:
    """An opaque copy of the edit state, for undo/redo."""

    weights: tuple[bool, ...]
    flags: tuple[tuple[str, bool], ...]
    stop_points: tuple[str, ...] = ()
    fine_tuning: FineTuning = FineTuning()
