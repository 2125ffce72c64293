"""`freezestudio apply FILE -o OUT [edits] [--write-plan P.json]`: apply edits (a plan,
a preset, freeze/unfreeze/stop-gradient options) and save the result; `--write-plan`
also writes the resulting edit as a plan file (e.g. to keep or edit a preset's plan)."""

from __future__ import annotations

from freezestudio.commands.common import (
    add_edit_options,
    add_merge_lora_option,
    add_model_options,
    open_edited_document,
)
from freezestudio.commands.exit_codes import ExitCode
from freezestudio.core.errors import UserError

HELP = "apply a plan or freeze/unfreeze/stop-gradient edits and save the result"


def configure(parser) -> None:
    add_model_options(parser)
    add_edit_options(parser)
    parser.add_argument("-o", "--output", required=True,
                        help="output .keras or .h5 file (a directory for generic SavedModels)")
    parser.add_argument("--portable", action="store_true",
                        help="drop stop-gradient layers so plain Keras loads the file")
    add_merge_lora_option(parser)
    parser.add_argument("--write-plan", metavar="P.json",
                        help="also write the resulting edit (freeze state, stop-gradient "
                             "points, learning-rate multipliers, schedule) as a plan file")


def run(args) -> int:
    from freezestudio.core.edits.plans import derive_plan, save_plan
    from freezestudio.core.files.saving import save_document

    document = open_edited_document(args)
    report = save_document(document, args.output, portable=args.portable,
                           merge_lora=args.merge_lora)
    if args.write_plan:
        try:
            save_plan(derive_plan(document), args.write_plan)
        except OSError as exc:
            raise UserError(f"--write-plan {args.write_plan}: cannot be written "
                            f"({exc.strerror or exc})") from None
        print(f"wrote the plan {args.write_plan}")
    counts = document.counts()
    receiving = f"{document.receiving_params():,} receive gradient"
    if args.portable and document.stop_points:  # the copy has no points: the count is not its
        receiving += (f" with the {len(document.stop_points)} stop-gradient point(s) this "
                      "portable copy drops")
    print(f"saved {report.path} ({report.format}): {counts.trainable:,} of {counts.params:,} "
          f"params trainable, {receiving}")
    for note in report.notes:
        print(f"note: {note}")
    return ExitCode.OK
