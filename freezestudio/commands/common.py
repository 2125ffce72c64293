"""Options and steps shared by the sub-commands."""

from __future__ import annotations

import argparse


def add_model_options(parser: argparse.ArgumentParser) -> None:
    """FILE, --trust and --custom-objects: every command that reads a model takes them."""
    parser.add_argument("file", help=".keras, .h5 or SavedModel directory")
    parser.add_argument("--trust", action="store_true",
                        help="allow Lambda layers and other objects that run code when loaded")
    parser.add_argument("--custom-objects", action="append", default=[], metavar="MODULE.py",
                        help="import this file so the custom classes it registers load")


class _TrainableRule(argparse.Action):
    """Collects --freeze/--unfreeze into one list in command-line order (later wins)."""

    def __init__(self, option_strings, dest, const, **kwargs):
        super().__init__(option_strings, dest, nargs=None, const=const, **kwargs)

    def __call__(self, parser, namespace, value, option_string=None):
        setattr(namespace, self.dest, [*getattr(namespace, self.dest, []), (value, self.const)])


def add_edit_options(parser: argparse.ArgumentParser) -> None:
    """--plan, --preset, --freeze, --unfreeze, --stop-gradient-after."""
    parser.add_argument("--plan", metavar="P.json", help="apply this plan first")
    parser.add_argument("--preset", metavar="NAME[:OPTIONS]",
                        help="then this fine-tuning preset: 'gradual[:blocks=N,from_epoch=E,"
                             "lr=F]' (train the head, then the last N blocks at LR x F from "
                             "epoch E) or 'discriminative[:lowest=F]' (multipliers growing "
                             "geometrically from F on the first block to 1 on the head); "
                             "globs=GLOB;GLOB;... names the blocks where none are found")
    parser.add_argument("--freeze", action=_TrainableRule, dest="rules", default=[],
                        const=False, metavar="GLOB",
                        help="freeze the layers/weights matching GLOB (repeatable; "
                             "--freeze/--unfreeze apply in the order given, after --plan)")
    parser.add_argument("--unfreeze", action=_TrainableRule, dest="rules", default=[],
                        const=True, metavar="GLOB",
                        help="unfreeze the layers/weights matching GLOB (repeatable)")
    parser.add_argument("--stop-gradient-after", action="append", default=[], metavar="PATH",
                        help="insert a stop-gradient point after this layer (PATH or PATH[k])")


def add_merge_lora_option(parser: argparse.ArgumentParser) -> None:
    """--merge-lora, for the commands that save a .keras/.h5 (apply, train, export)."""
    parser.add_argument("--merge-lora", action="store_true",
                        help="keras/h5: write LoRA adapters merged into their kernels, a plain "
                             "model (default: kept, so the file trains on with them); "
                             "deployment exports always merge them")


def open_edited_document(args, config_first: bool = False):
    """Opens args.file and applies --plan, then --preset, then
    --freeze/--unfreeze/--stop-gradient-after.

    Args:
        config_first: a `.keras` file whose config tells the model exactly is opened
            from its config, without TensorFlow (`open_described_document`): for commands
            that only read the structure (inspect); a plan with LoRA rules loads it.
    """
    from freezestudio.core.edits.plans import Plan, Rule, apply_plan, load_plan
    from freezestudio.core.files.loading import open_described_document, open_document
    from freezestudio.core.graph.description import is_described

    document = None
    if config_first and not args.custom_objects:
        document = open_described_document(args.file, trust=args.trust)
    if document is None:
        document = open_document(args.file, trust=args.trust,
                                 custom_object_modules=args.custom_objects)
    plan = load_plan(args.plan) if getattr(args, "plan", None) else Plan()
    if plan.lora and is_described(document.model):  # adapters are made by Keras
        document = open_document(args.file, trust=args.trust)
    edits = Plan([Rule(pattern, value) for pattern, value in getattr(args, "rules", [])],
                 list(getattr(args, "stop_gradient_after", [])))
    if getattr(args, "preset", None):
        from freezestudio.core.edits.presets import preset_plan

        apply_plan(document, plan)
        plan = Plan()
        apply_plan(document, preset_plan(document, args.preset))
    plan.trainable += edits.trainable
    plan.stop_gradient_after += edits.stop_gradient_after
    apply_plan(document, plan)
    return document
