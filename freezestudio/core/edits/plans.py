"""Plans: replayable edits in the JSON format of docs/architecture.md.

A plan's `trainable` rules apply in order (later wins); each `match` is a shell-style
glob over layer paths and weight ids, and a rule on a layer or container applies to
every weight inside it. A rule that matches nothing is an error naming the closest
existing addresses.
"""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path

from freezestudio.core.errors import PlanError
from freezestudio.core.model.document import PARTIAL, Document
from freezestudio.core.model.tree import LayerNode

PLAN_VERSION = 1
_GLOB_SPECIALS = re.compile(r"([*?\[])")


@dataclass
class Rule:
    match: str
    value: object

    def to_dict(self) -> dict:
        return {"match": self.match, "value": self.value}


LATER_KEYS = ("lr_multipliers", "schedule")
"""Plan keys docs/architecture.md reserves for later: validated and kept, not applied yet."""


@dataclass
class Plan:
    """A parsed plan. Unknown later keys (`lr_multipliers`, `schedule`) are kept as given."""

    trainable: list[Rule] = field(default_factory=list)
    stop_gradient_after: list[str] = field(default_factory=list)
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data) -> Plan:
        """Validates and parses a plan object. Raises PlanError."""
        if not isinstance(data, dict) or data.get("freezestudio_plan") != PLAN_VERSION:
            raise PlanError(f"not a FreezeStudio plan (expected \"freezestudio_plan\": "
                            f"{PLAN_VERSION} at the top level)")
        rules = [_parse_rule(item, "trainable", bool) for item in _list(data, "trainable")]
        stops = _list(data, "stop_gradient_after")
        if not all(isinstance(item, str) for item in stops):
            raise PlanError("plan: 'stop_gradient_after' must be a list of layer paths")
        for item in _list(data, "lr_multipliers"):
            _parse_rule(item, "lr_multipliers", (int, float))
        extra = {k: v for k, v in data.items()
                 if k not in ("freezestudio_plan", "trainable", "stop_gradient_after")}
        return cls(rules, list(stops), extra)

    def unapplied_note(self) -> str:
        """What of the plan this version does not apply (its later keys), or ""."""
        keys = [key for key in LATER_KEYS if self.extra.get(key)]
        if not keys:
            return ""
        return (f"the plan's {' and '.join(keys)} {'is' if len(keys) == 1 else 'are'} not "
                "applied by this version of FreezeStudio (nor stored with the model)")

    def to_dict(self) -> dict:
        return {
            "freezestudio_plan": PLAN_VERSION,
            "trainable": [rule.to_dict() for rule in self.trainable],
            "stop_gradient_after": list(self.stop_gradient_after),
            **self.extra,
        }


def _list(data: dict, key: str) -> list:
    value = data.get(key, [])
    if not isinstance(value, list):
        raise PlanError(f"plan: '{key}' must be a list")
    return value


def _parse_rule(item, key: str, value_type) -> Rule:
    if (not isinstance(item, dict) or not isinstance(item.get("match"), str)
            or not isinstance(item.get("value"), value_type)
            or (value_type is not bool and isinstance(item.get("value"), bool))):
        raise PlanError(f"plan: each '{key}' entry must be {{\"match\": GLOB, \"value\": ...}} "
                        f"with a {'boolean' if value_type is bool else 'number'} value, "
                        f"got {json.dumps(item)[:80]}")
    return Rule(item["match"], item["value"])


def load_plan(path) -> Plan:
    """Reads a plan file. Raises PlanError for a missing, invalid or malformed file."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise PlanError(f"plan {path}: cannot be read ({exc.strerror or exc})") from None
    except ValueError as exc:
        raise PlanError(f"plan {path}: not valid JSON ({exc})") from None
    return Plan.from_dict(data)


def save_plan(plan: Plan, path) -> None:
    Path(path).write_text(json.dumps(plan.to_dict(), indent=2) + "\n")


def matching_nodes(document: Document, pattern: str) -> list:
    """Layers and weights whose address matches the glob. Raises PlanError if none."""
    nodes = [document.layer(p) for p in document.layer_paths if fnmatchcase(p, pattern)]
    nodes += [document.weight(w) for w in document.weight_ids if fnmatchcase(w, pattern)]
    if not nodes:
        raise PlanError(no_match_message(document, pattern))
    return nodes


def no_match_message(document: Document, pattern: str) -> str:
    addresses = [p for p in document.layer_paths if p] + document.weight_ids
    close = difflib.get_close_matches(pattern, addresses, n=3, cutoff=0.4)
    hint = f"; closest: {', '.join(close)}" if close else ""
    return f"pattern '{pattern}' matches no layer or weight{hint}"


def apply_plan(document: Document, plan: Plan) -> None:
    """Applies a plan's edits to the document (all rules are checked before any is applied)."""
    resolved = [(matching_nodes(document, rule.match), rule.value) for rule in plan.trainable]
    if plan.stop_gradient_after:
        from freezestudio.core.edits.stop_gradient import add_stop_gradient_points

        add_stop_gradient_points(document, plan.stop_gradient_after)
    for nodes, value in resolved:
        document.set_trainable(nodes, value)


def glob_escape(address: str) -> str:
    """A glob that matches exactly `address`."""
    return _GLOB_SPECIALS.sub(r"[\1]", address)


def derive_plan(document: Document) -> Plan:
    """A plan that reproduces the document's edit state from any starting state.

    It starts with one rule for everything, then adds the fewest rules that mark where
    the tree differs from its enclosing node.
    """
    root_state = document.trainable_state(document.root)
    default = root_state if root_state is not PARTIAL else _majority(document, document.root)
    rules = [Rule("*", default)]

    def visit(node: LayerNode, inherited: bool) -> None:
        for child in node.children:
            state = document.trainable_state(child)
            if state is not PARTIAL and state != inherited:
                rules.append(Rule(glob_escape(child.path), state))
                inherited_inside = state
            else:
                inherited_inside = inherited
            visit(child, inherited_inside)  # weightless layers inside may differ
        for weight in node.weights:
            if weight.freezable and document.is_weight_trainable(weight) != inherited:
                rules.append(Rule(glob_escape(weight.id), document.is_weight_trainable(weight)))

    visit(document.root, default)
    return Plan(rules, list(document.stop_points))


def _majority(document: Document, node: LayerNode) -> bool:
    counts = document.counts(node)
    return counts.trainable * 2 >= counts.params
