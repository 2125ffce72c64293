"""Plans: replayable edits in the JSON format of docs/architecture.md.

A plan's `trainable` rules apply in order (later wins); each `match` is a shell-style
glob over layer paths and weight ids, and a rule on a layer or container applies to
every weight inside it except LoRA adapters (a rule changes adapter matrices only when
its pattern names them: has `lora_kernel` in it). A rule that matches nothing is an error
naming the closest existing addresses. The `lora` rules apply first (`core/edits/lora.py`),
so the `trainable` rules can name the adapters' weights. `lr_multipliers` and `schedule`
(the same rule form) become the document's `FineTuning`, which the training engine
applies and saves store.
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
from freezestudio.core.model.fine_tuning import BATCHNORM_POLICIES, BN_FROZEN, Stage
from freezestudio.core.model.tree import LayerNode

PLAN_VERSION = 1
_GLOB_SPECIALS = re.compile(r"([*?\[])")


@dataclass
class Rule:
    match: str
    value: object

    def to_dict(self) -> dict:
        return {"match": self.match, "value": self.value}


@dataclass
class LoraRule:
    match: str
    rank: int
    alpha: float | None = None

    def to_dict(self) -> dict:
        alpha = {} if self.alpha is None else {"alpha": self.alpha}
        return {"match": self.match, "rank": self.rank, **alpha}


_TOP_KEYS = ("freezestudio_plan", "trainable", "stop_gradient_after", "lora",
             "lr_multipliers", "schedule")
_RULE_KEYS = ("match", "value")
_LORA_KEYS = ("match", "rank", "alpha")
_STAGE_KEYS = ("from_epoch", "trainable", "lr_multipliers", "batchnorm")


@dataclass
class Plan:
    """A parsed plan (every key of the format is applied)."""

    trainable: list[Rule] = field(default_factory=list)
    stop_gradient_after: list[str] = field(default_factory=list)
    lora: list[LoraRule] = field(default_factory=list)
    lr_multipliers: list[Rule] = field(default_factory=list)
    schedule: list[Stage] = field(default_factory=list)

    @classmethod
    def from_dict(cls, data) -> Plan:
        """Validates and parses a plan object.

        Raises:
            PlanError: not a plan, a newer format version, an unknown key (named, with
                the closest valid one), or a value of the wrong type.
        """
        if not isinstance(data, dict) or "freezestudio_plan" not in data:
            raise PlanError(f"not a FreezeStudio plan (expected \"freezestudio_plan\": "
                            f"{PLAN_VERSION} at the top level)")
        version = data["freezestudio_plan"]
        if version != PLAN_VERSION:
            raise PlanError(f"plan format version {json.dumps(version)[:20]} is not one this "
                            f"FreezeStudio reads (it reads version {PLAN_VERSION})")
        _check_keys(data, _TOP_KEYS, "plan")
        rules = [_parse_rule(item, "trainable", bool) for item in _list(data, "trainable")]
        stops = _list(data, "stop_gradient_after")
        if not all(isinstance(item, str) for item in stops):
            raise PlanError("plan: 'stop_gradient_after' must be a list of layer paths")
        multipliers = _parse_multipliers(_list(data, "lr_multipliers"), "plan")
        adapters = [_parse_lora(item) for item in _list(data, "lora")]
        schedule = _parse_schedule(_list(data, "schedule"))
        return cls(rules, list(stops), adapters, multipliers, schedule)

    def to_dict(self) -> dict:
        return {
            "freezestudio_plan": PLAN_VERSION,
            "trainable": [rule.to_dict() for rule in self.trainable],
            "stop_gradient_after": list(self.stop_gradient_after),
            **({"lora": [rule.to_dict() for rule in self.lora]} if self.lora else {}),
            **({"lr_multipliers": [r.to_dict() for r in self.lr_multipliers]}
               if self.lr_multipliers else {}),
            **({"schedule": [stage.to_dict() for stage in self.schedule]}
               if self.schedule else {}),
        }


def _check_keys(item: dict, known: tuple, where: str) -> None:
    for key in item:
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1, cutoff=0.5)
            hint = f" (did you mean '{close[0]}'?)" if close else \
                f" (known keys: {', '.join(known)})"
            raise PlanError(f"{where}: unknown key '{key}'{hint}")


def _list(data: dict, key: str, where: str = "plan") -> list:
    value = data.get(key, [])
    if not isinstance(value, list):
        raise PlanError(f"{where}: '{key}' must be a list")
    return value


def _is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _parse_rule(item, key: str, value_type, where: str = "plan") -> Rule:
    if isinstance(item, dict):
        _check_keys(item, _RULE_KEYS, f"{where}: a '{key}' entry")
    typed = isinstance(item, dict) and (
        isinstance(item.get("value"), bool) if value_type is bool
        else _is_number(item.get("value")))
    if not isinstance(item, dict) or not isinstance(item.get("match"), str) or not typed:
        raise PlanError(f"{where}: each '{key}' entry must be {{\"match\": GLOB, \"value\": ...}} "
                        f"with a {'boolean' if value_type is bool else 'number'} value, "
                        f"got {json.dumps(item)[:80]}")
    return Rule(item["match"], item["value"])


def _parse_multipliers(items: list, where: str) -> list[Rule]:
    rules = [_parse_rule(item, "lr_multipliers", float, where) for item in items]
    for rule in rules:
        if not (rule.value > 0 and rule.value < float("inf")):
            raise PlanError(f"{where}: a learning-rate multiplier must be > 0 (and finite), "
                            f"got {rule.value} for '{rule.match}'")
    return rules


def _parse_lora(item) -> LoraRule:
    if not isinstance(item, dict):
        raise PlanError(f"plan: each 'lora' entry must be an object, got {json.dumps(item)[:80]}")
    _check_keys(item, _LORA_KEYS, "plan: a 'lora' entry")
    rank, alpha = item.get("rank"), item.get("alpha", item.get("rank"))
    if not isinstance(item.get("match"), str) or not isinstance(rank, int) \
            or isinstance(rank, bool) or rank < 1 or not _is_number(alpha) or alpha <= 0:
        raise PlanError("plan: each 'lora' entry must be {\"match\": GLOB, \"rank\": N >= 1} "
                        f"with an optional \"alpha\" > 0, got {json.dumps(item)[:80]}")
    return LoraRule(item["match"], rank, item.get("alpha"))


def _parse_schedule(stages: list) -> list[Stage]:
    parsed, last = [], 0
    for stage in stages:
        if not isinstance(stage, dict):
            raise PlanError(f"plan: each 'schedule' stage must be an object, got "
                            f"{json.dumps(stage)[:80]}")
        _check_keys(stage, _STAGE_KEYS, "plan: a 'schedule' stage")
        start = stage.get("from_epoch")
        if not isinstance(start, int) or isinstance(start, bool) or start <= last:
            raise PlanError("plan: each 'schedule' stage needs \"from_epoch\": an epoch "
                            f"(1-based) after the previous stage's, got {json.dumps(start)}")
        last = start
        where = f"plan: the schedule stage from epoch {start}"
        trainable = [_parse_rule(item, "trainable", bool, where)
                     for item in _list(stage, "trainable", where)]
        multipliers = _parse_multipliers(_list(stage, "lr_multipliers", where), where)
        policy = stage.get("batchnorm", BN_FROZEN)
        if policy not in BATCHNORM_POLICIES:
            raise PlanError(f"{where}: 'batchnorm' must be one of "
                            f"{', '.join(BATCHNORM_POLICIES)}, got {json.dumps(policy)[:40]}")
        parsed.append(Stage(start, tuple((r.match, r.value) for r in trainable),
                            tuple((r.match, float(r.value)) for r in multipliers), policy))
    return parsed


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
    """Why `pattern` matches nothing, with the closest existing addresses (by edit
    distance, then by the longest shared prefix) and the case-insensitive matches."""
    addresses = [p for p in document.layer_paths if p] + document.weight_ids
    message = f"pattern '{pattern}' matches no layer or weight"
    if pattern == document.root.name:
        return (f"{message}: '{pattern}' is the top model itself, whose path is empty; "
                "addresses start below it, and '*' matches everything")
    folded = [a for a in addresses if fnmatchcase(a.lower(), pattern.lower())]
    if folded:
        return f"{message} (matching is case-sensitive; with other case: {', '.join(folded[:3])})"
    close = closest_addresses(pattern, addresses)
    return f"{message}; closest: {', '.join(close)}" if close else message


def closest_addresses(pattern: str, addresses: list[str], most: int = 5) -> list[str]:
    """The addresses nearest to a pattern that matched none: by edit distance first, then
    those sharing the longest prefix with its literal part (before any wildcard)."""
    close = difflib.get_close_matches(pattern, addresses, n=3, cutoff=0.4)
    literal = _GLOB_SPECIALS.split(pattern, maxsplit=1)[0]
    by_prefix = sorted(addresses, key=lambda a: (-_shared_prefix(a, literal), len(a)))
    close += [a for a in by_prefix[:3] if a not in close and _shared_prefix(a, literal) >= 3]
    return close[:most]


def _shared_prefix(a: str, b: str) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def apply_plan(document: Document, plan: Plan) -> None:
    """Applies a plan's edits to the document: its `lora` rules, its stop-gradient
    points, then its `trainable` rules (every pattern is checked first; a `lora` rule
    that Keras refuses stops the plan there, naming the layer), then its fine-tuning
    strategy: its `lr_multipliers` are added after the document's own (a rule for the
    same glob replaces the older one); its `schedule`, when given, replaces the
    document's."""
    from freezestudio.core.edits import lora

    adapters = [(matching_nodes(document, rule.match), rule) for rule in plan.lora]
    for pattern in [rule.match for rule in plan.trainable] + _strategy_patterns(plan):
        if not _is_adapter_pattern(pattern):  # adapters' rows exist once added
            matching_nodes(document, pattern)
    for nodes, rule in adapters:
        lora.add_adapters(document, nodes, rule.rank, rule.alpha, pattern=rule.match)
    resolved = [(matching_nodes(document, rule.match), rule) for rule in plan.trainable]
    for pattern in _strategy_patterns(plan):
        matching_nodes(document, pattern)
    if plan.stop_gradient_after:
        from freezestudio.core.edits.stop_gradient import add_stop_gradient_points

        add_stop_gradient_points(document, plan.stop_gradient_after)
    for nodes, rule in resolved:
        _set_trainable_keeping_adapters(document, nodes, rule.value, rule.match)
    if plan.lr_multipliers or plan.schedule:
        strategy = document.fine_tuning.with_multipliers(
            (rule.match, rule.value) for rule in plan.lr_multipliers)
        document.set_fine_tuning(strategy.with_schedule(plan.schedule or strategy.schedule))


def _strategy_patterns(plan: Plan) -> list[str]:
    patterns = [rule.match for rule in plan.lr_multipliers]
    for stage in plan.schedule:
        patterns += [pattern for pattern, _ in stage.trainable + stage.lr_multipliers]
    return patterns


def _is_adapter_pattern(pattern: str) -> bool:
    return "lora_kernel" in pattern


def _set_trainable_keeping_adapters(document: Document, nodes: list, value: bool,
                                    pattern: str) -> None:
    """`set_trainable`, except that adapter rows keep their state unless the pattern
    names adapter matrices (`lora_kernel` in it)."""
    adapter_rows = [row for a in document.adapters() for row in (a.a, a.b)]
    kept = {row: document.is_weight_trainable(row) for row in adapter_rows}
    if _is_adapter_pattern(pattern):
        kept = {}
    document.set_trainable(nodes, value)
    for state in (True, False):
        again = [row for row, was in kept.items() if was is state and state is not value]
        if again:
            document.set_trainable(again, state)


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
    adapters = document.adapters()
    for adapter in adapters:  # layer rules leave adapters alone: each is named
        rules += [Rule(glob_escape(row.id), document.is_weight_trainable(row))
                  for row in (adapter.a, adapter.b)]
    lora = [LoraRule(glob_escape(a.id), a.rank, a.alpha if a.alpha != a.rank else None)
            for a in adapters]
    strategy = document.fine_tuning
    return Plan(rules, list(document.stop_points), lora=lora,
                lr_multipliers=[Rule(m, v) for m, v in strategy.lr_multipliers],
                schedule=list(strategy.schedule))


def _majority(document: Document, node: LayerNode) -> bool:
    counts = document.counts(node)
    return counts.trainable * 2 >= counts.params
