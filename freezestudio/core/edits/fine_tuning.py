"""A document's fine-tuning strategy resolved against its addresses: each weight's
learning-rate multiplier, and the strategy as `inspect` shows it.

Multiplier rules resolve like `trainable` rules (docs/architecture.md, Plan file): in
order, later wins, a rule on a layer or container covers every weight inside it;
weights no rule names keep 1.
"""

from __future__ import annotations

from freezestudio.core.edits.plans import matching_nodes
from freezestudio.core.model.tree import WeightNode


def resolve_multipliers(document, rules, start: dict | None = None) -> dict:
    """Weight id -> multiplier after `rules` (`(glob, value)` pairs, in order) on top of
    `start` (default: 1 for every weight).

    Raises:
        PlanError: a glob matches nothing.
    """
    values = dict(start) if start is not None else {w.id: 1.0 for w in document.weights}
    for pattern, value in rules:
        for node in matching_nodes(document, pattern):
            weights = [node] if isinstance(node, WeightNode) else node.all_weights()
            for weight in weights:
                values[weight.id] = float(value)
    return values


def fine_tuning_dict(document) -> dict:
    """`inspect --json`'s keys for the strategy: the rules and stages as in a plan, and
    `lr_multiplier_by_weight` (every weight whose multiplier from epoch 1 is not 1)."""
    strategy = document.fine_tuning
    multipliers = resolve_multipliers(document, strategy.lr_multipliers)
    return {
        "lr_multipliers": [{"match": m, "value": v} for m, v in strategy.lr_multipliers],
        "schedule": [stage.to_dict() for stage in strategy.schedule],
        "lr_multiplier_by_weight": {k: v for k, v in multipliers.items() if v != 1.0},
    }


def fine_tuning_lines(document) -> list[str]:
    """The strategy for `inspect`'s text output (empty without one)."""
    strategy = document.fine_tuning
    lines = []
    if strategy.lr_multipliers:
        multipliers = resolve_multipliers(document, strategy.lr_multipliers)
        counts: dict = {}
        for value in multipliers.values():
            counts[value] = counts.get(value, 0) + 1
        rules = ", ".join(f"{m} x{v:g}" for m, v in strategy.lr_multipliers)
        spread = ", ".join(f"x{v:g}: {n} weight(s)" for v, n in sorted(counts.items()))
        lines.append(f"learning-rate multipliers: {rules} ({spread})")
    for stage in strategy.schedule:
        lines.append(f"schedule: from epoch {stage.from_epoch}: {stage.describe()}")
    return lines


class MultiplierView:
    """What the tree's "LR x" column shows: each node's multiplier from epoch 1 and
    whether a rule names the node itself (else it is inherited, or the default 1).

    Args:
        document: the document (read once; make a new view after an edit).
    """

    def __init__(self, document):
        rules = document.fine_tuning.lr_multipliers
        self._values = resolve_multipliers(document, rules)
        self._explicit = set()
        for pattern, _ in rules:
            for node in matching_nodes(document, pattern):
                self._explicit.add(id(node))

    def value(self, node) -> float | str | None:
        """The multiplier of a weight; of a layer, its weights' common one, "mixed", or
        None when it has no trainable-capable weight."""
        if isinstance(node, WeightNode):
            return self._values[node.id] if node.freezable else None
        values = {self._values[w.id] for w in node.all_weights() if w.freezable}
        if not values:
            return None
        return values.pop() if len(values) == 1 else "mixed"

    def explicit(self, node) -> bool:
        """A rule names this node itself (not inherited from a container, not default)."""
        return id(node) in self._explicit
