"""`.keras` and `.h5` exports: the editable model, flags and stop-gradient points kept.

An export is a copy: unlike "save as", the document keeps its own file name and its
modified flag. The verification reopens the copy as FreezeStudio does and checks both the
outputs and the freeze state (per weight) and the stop-gradient points.
"""

from __future__ import annotations

from pathlib import Path

from freezestudio.core.export.inference_model import from_keras_model


def write_keras_file(document, path: Path, options) -> list[str]:
    """Saves a copy of the document at `path` (suffix `.keras` or `.h5`)."""
    from freezestudio.core.files.saving import save_document

    report = save_document(document, path, portable=options.portable, copy=True,
                           merge_lora=options.merge_lora)
    return list(report.notes)


def reopen(path: Path):
    """The copy opened as a document (its code was trusted when the original was opened)."""
    from freezestudio.core.files.loading import open_document

    return open_document(path, trust=True)


def run_keras_file(path: Path, feeds: dict):
    """(outputs on `feeds`, reopened document)."""
    copy = reopen(path)
    return from_keras_model(copy.model).predict(feeds), copy


def state_differences(document, copy, portable: bool, merge_lora: bool = False) -> list[str]:
    """How the reopened copy's freeze state and points differ from the document's (its
    adapters' rows and kernels left out where they were merged)."""
    problems = []
    expected_points = [] if portable else document.stop_points
    if copy.stop_points != expected_points:
        problems.append(f"stop-gradient points {copy.stop_points} instead of {expected_points}")
    merged = {row.id for a in document.adapters() for row in (a.kernel, a.a, a.b)} \
        if merge_lora else set()
    wanted = {w.id: document.is_weight_trainable(w) for w in document.weights
              if w.id not in merged}
    got = {w.id: copy.is_weight_trainable(w) for w in copy.weights}
    changed = [key for key in wanted if got.get(key) != wanted[key]]
    if changed:
        problems.append(f"{len(changed)} weight(s) changed their trainable flag "
                        f"(e.g. {changed[0]})")
    return problems
