"""`freezestudio apply FILE -o OUT [edits]`: apply edits and save the result."""

from __future__ import annotations

from freezestudio.commands.common import (
    add_edit_options,
    add_merge_lora_option,
    add_model_options,
    open_edited_document,
)
from freezestudio.commands.exit_codes import ExitCode

HELP = "apply a plan or freeze/unfreeze/stop-gradient edits and save the result"


def configure(parser) -> None:
    add_model_options(parser)
    add_edit_options(parser)
    parser.add_argument("-o", "--output", required=True,
                        help="output .keras or .h5 file (a directory for generic SavedModels)")
    parser.add_argument("--portable", action="store_true",
                        help="drop stop-gradient layers so plain Keras loads the file")
    add_merge_lora_option(parser)


def run(args) -> int:
    from freezestudio.core.files.saving import save_document

    document = open_edited_document(args)
    report = save_document(document, args.output, portable=args.portable,
                           merge_lora=args.merge_lora)
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
