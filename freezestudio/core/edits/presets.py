"""Presets: plans for the two fine-tuning recipes users ask for by name.

- `gradual` ("train the head, then unfreeze the last N blocks at LR x f from epoch E";
  Lightning's `BackboneFinetuning`, fastai's `fine_tune(freeze_epochs=...)`): everything
  but the head is frozen from epoch 1; from epoch E the last N blocks, and every layer
  between them and the head, train at the multiplier f, BatchNorm kept frozen.
- `discriminative` (fastai's `slice(lr)`): the multiplier grows geometrically from
  `lowest` on the first block to 1 on the head; layers before the first block get the
  first block's, layers between blocks the one before them. Freeze state is untouched.

Blocks are found from the layer names (`find_blocks`), in tree order, inside the deepest
container that holds them: `block_16_*` (MobileNetV2, with `expanded_conv_*` as its
block 0), `conv5_block3_*` (ResNet, DenseNet), `block6a_*` (EfficientNet), `block5_*`
(VGG), a keras_hub backbone's `transformer_layer_k`. The head is what follows the
blocks: the layers outside the container that holds them or, when the blocks are at the
top level, the layers after the last block. When no blocks are found the preset says so
and asks for globs (`globs=`), one per block from input to head.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fnmatch import fnmatchcase

from freezestudio.core.edits.plans import Plan, Rule, glob_escape, matching_nodes
from freezestudio.core.errors import PlanError
from freezestudio.core.model.fine_tuning import Stage

PRESETS = ("gradual", "discriminative")
_WHOLE_BLOCK = re.compile(r"^transformer_layer_\d+$")
_BLOCK_PATTERNS = (
    re.compile(r"^(conv\d+_block\d+)_"),
    re.compile(r"^(block_?\d+[a-z]?)_"),
    re.compile(r"^(expanded_conv)_"),
)


@dataclass
class Block:
    """A block: its glob and the leaf layer paths it covers (in tree order)."""

    glob: str
    paths: list


def _leaves(document) -> list:
    return [n for n in document.root.walk() if n is not document.root and not n.children]


def find_blocks(document, globs=()) -> list[Block]:
    """The model's blocks from input to head (see the module docstring); with `globs`,
    one block per glob instead.

    Raises:
        PlanError: no blocks found (asks for globs), or a glob matches nothing.
    """
    leaves = _leaves(document)
    if globs:
        blocks = []
        for glob in globs:
            matching_nodes(document, glob)
            paths = [n.path for n in leaves if fnmatchcase(n.path, glob) or any(
                fnmatchcase(a.path, glob) for a in n.ancestors())]
            blocks.append(Block(glob, paths))
        return blocks
    found: dict = {}
    for node in document.root.walk():
        if node is document.root or any(a.path in found for a in node.ancestors()):
            continue
        name = node.path.rsplit("/", 1)[-1]
        whole = _WHOLE_BLOCK.match(name)
        if whole:  # a composite layer (or container) that is a block by itself
            found[node.path] = Block(glob_escape(node.path), [
                n.path for n in node.walk() if not n.children])
            continue
        if node.children:
            continue
        for pattern in _BLOCK_PATTERNS:
            match = pattern.match(name)
            if match:
                key = node.path[:-len(name)] + match.group(1)
                found.setdefault(key, Block(glob_escape(key) + "_*", [])).paths.append(
                    node.path)
                break
    if len(found) < 2:
        raise PlanError("the preset found no blocks in this model (layer names like "
                        "block_16_*, conv5_block3_*, transformer_layer_k); name them with "
                        "globs=GLOB;GLOB;... from input to head")
    return list(found.values())


def _head(document, blocks: list) -> list:
    """Leaf paths of the head: outside the container of the blocks, or after them."""
    leaves = [n.path for n in _leaves(document)]
    last = max(leaves.index(p) for p in blocks[-1].paths)
    container = blocks[-1].paths[-1].rpartition("/")[0]
    if container:
        return [p for p in leaves if not p.startswith(container + "/")
                and leaves.index(p) > last]
    return leaves[last + 1:]


def _between(document, blocks: list, head: list) -> list:
    """Leaf paths after the first of `blocks` that are in none of them nor the head."""
    leaves = [n.path for n in _leaves(document)]
    first = min(leaves.index(p) for p in blocks[0].paths)
    inside = {p for b in blocks for p in b.paths} | set(head)
    return [p for p in leaves[first:] if p not in inside]


def gradual(document, blocks: int = 2, from_epoch: int = 2, factor: float = 0.1,
            globs=()) -> Plan:
    """The `gradual` plan (module docstring). Raises PlanError for bad values."""
    found = find_blocks(document, globs)
    if not 1 <= blocks <= len(found):
        raise PlanError(f"preset gradual: blocks must be 1 to {len(found)} (the blocks "
                        f"found), got {blocks}")
    if from_epoch < 2 or not factor > 0:
        raise PlanError("preset gradual: from_epoch must be at least 2 and lr > 0")
    head = _head(document, found)
    if not head:
        raise PlanError("preset gradual: nothing follows the last block to train as the "
                        "head")
    top = found[-blocks:]
    rules = [Rule(b.glob, True) for b in top] + [
        Rule(glob_escape(p), True) for p in _between(document, top, head)]
    stage = Stage(from_epoch, tuple((r.match, True) for r in rules),
                  tuple((r.match, float(factor)) for r in rules))
    trainable = [Rule("*", False)] + [Rule(glob_escape(p), True) for p in head]
    return Plan(trainable, schedule=[stage])


def discriminative_multipliers(blocks: int, lowest: float) -> list[float]:
    """The `discriminative` multipliers of `blocks` blocks from input to head: `lowest`
    on the first, growing by `lowest ** (-1 / blocks)` from block to block (the head,
    one step further, gets 1)."""
    return [lowest ** ((blocks - i) / blocks) for i in range(blocks)]


def discriminative(document, lowest: float = 0.01, globs=()) -> Plan:
    """The `discriminative` plan (module docstring). Raises PlanError for bad values."""
    found = find_blocks(document, globs)
    if not 0 < lowest <= 1:
        raise PlanError(f"preset discriminative: lowest must be in (0, 1], got {lowest}")
    values = discriminative_multipliers(len(found), lowest)
    block_of = {p: i for i, b in enumerate(found) for p in b.paths}
    head = set(_head(document, found))
    rules = [Rule("*", values[0])] + [Rule(b.glob, v) for b, v in zip(found, values,
                                                                      strict=True)]
    current = None
    for node in _leaves(document):
        if node.path in head:
            rules.append(Rule(glob_escape(node.path), 1.0))
        elif node.path in block_of:
            current = block_of[node.path]
        elif current is not None and current > 0:  # between blocks: the one before
            rules.append(Rule(glob_escape(node.path), values[current]))
    return Plan(lr_multipliers=rules)


def parse_preset(text: str) -> tuple[str, dict]:
    """`NAME[:key=value,...]` -> (name, options). Raises PlanError naming the problem."""
    name, _, rest = text.partition(":")
    if name not in PRESETS:
        raise PlanError(f"unknown preset '{name}' (choose {', '.join(PRESETS)})")
    allowed = {"gradual": {"blocks": int, "from_epoch": int, "lr": float, "globs": str},
               "discriminative": {"lowest": float, "globs": str}}[name]
    options = {}
    for item in filter(None, rest.split(",")):
        key, _, value = item.partition("=")
        if key not in allowed:
            raise PlanError(f"preset {name}: unknown option '{key}' (known: "
                            f"{', '.join(allowed)})")
        try:
            options[key] = allowed[key](value)
        except ValueError:
            raise PlanError(f"preset {name}: {key}={value!r} is not a number") from None
    return name, options


def preset_plan(document, text: str) -> Plan:
    """The plan of a preset given as `NAME[:key=value,...]` (the CLI's `--preset`).

    gradual: `blocks=N` (default 2), `from_epoch=E` (2), `lr=F` (0.1); discriminative:
    `lowest=F` (0.01); both: `globs=GLOB;GLOB;...` to name the blocks.
    """
    name, options = parse_preset(text)
    globs = [g for g in options.pop("globs", "").split(";") if g]
    if name == "gradual":
        return gradual(document, options.get("blocks", 2), options.get("from_epoch", 2),
                       options.get("lr", 0.1), globs)
    return discriminative(document, options.get("lowest", 0.01), globs)
