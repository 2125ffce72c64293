"""`freezestudio inspect FILE [--json]`: the tree, flags and parameter counts, and the
fine-tuning strategy (learning-rate multipliers, schedule stages) stored or planned."""

from __future__ import annotations

import json
import sys

from freezestudio.commands.common import add_edit_options, add_model_options, open_edited_document
from freezestudio.commands.exit_codes import ExitCode

HELP = "print the tree, freeze flags, gradient flow and parameter counts"


def configure(parser) -> None:
    add_model_options(parser)
    add_edit_options(parser)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--weights", action="store_true", help="list weights in the text tree")


def run(args) -> int:
    from freezestudio.core.edits.fine_tuning import fine_tuning_dict, fine_tuning_lines
    from freezestudio.core.model.summary import document_dict, document_text

    document = open_edited_document(args, config_first=True)
    for note in document.notes:
        print(f"note: {note}", file=sys.stderr)
    if args.json:
        extra = fine_tuning_dict(document) if document.fine_tuning else {}
        print(json.dumps({**document_dict(document), **extra}))
    else:
        print(document_text(document, show_weights=args.weights))
        for line in fine_tuning_lines(document):
            print(line)
    return ExitCode.OK
