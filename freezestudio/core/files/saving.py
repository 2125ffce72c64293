"""Saving a document: write to a temporary path beside the target, then rename it over.

A failure at any point (serialization, disk full, a crash before the rename) leaves the
original file or directory byte-for-byte as it was.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from freezestudio.core.errors import UserError, first_line
from freezestudio.core.files import formats
from freezestudio.core.files.state_store import write_state
from freezestudio.core.model.document import Document

_FORMAT_OF_SUFFIX = {".keras": formats.KERAS, ".h5": formats.H5, ".hdf5": formats.H5}


@dataclass
class SaveReport:
    """What was written, and what plain Keras will not see when it reloads the file."""

    path: Path
    format: str
    notes: list[str] = field(default_factory=list)


def format_for_target(document: Document, target: Path) -> str:
    """The format a save to `target` writes. Raises UserError for an unsupported target."""
    if document.source_format == formats.SAVEDMODEL:
        if target.suffix.lower() in _FORMAT_OF_SUFFIX:
            raise UserError(f"{target}: a generic SavedModel can only be saved as a "
                            "SavedModel directory (a path without .keras/.h5)")
        return formats.SAVEDMODEL
    fmt = _FORMAT_OF_SUFFIX.get(target.suffix.lower())
    if fmt is None:
        raise UserError(f"{target}: choose a name ending in .keras or .h5 "
                        "(other formats are exports: freezestudio export)")
    return fmt


def save_document(document: Document, target, portable: bool = False,
                  copy: bool = False) -> SaveReport:
    """Saves the edited model with its flags and FreezeStudio state.

    Args:
        document: what to save.
        target: `.keras`/`.h5` file, or a directory for generic SavedModels.
        portable: drop the stop-gradient layers (identity at inference) so plain Keras
            loads the file without FreezeStudio; the document itself keeps them.
        copy: write a copy (an export): the document keeps its own file and its
            modified flag. A portable save is always a copy.

    Raises:
        UserError: unsupported target or the write failed (the original is untouched).
    """
    from freezestudio.core.edits.plans import derive_plan

    target = Path(target)
    fmt = format_for_target(document, target)
    model = _model_to_save(document, portable)
    plan = derive_plan(document)
    if portable:
        plan.stop_gradient_after = []
    directory = target.parent if str(target.parent) else Path(".")
    if not directory.is_dir():
        raise UserError(f"{target}: the folder {directory} does not exist")
    try:
        if fmt == formats.SAVEDMODEL:
            _replace_directory(target, lambda tmp: _write(model, tmp, fmt, plan))
        else:
            if fmt == formats.H5:
                _layer_level_variable_flags(document)
            _replace_file(target, lambda tmp: _write(model, tmp, fmt, plan))
    except UserError:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure leaves the original intact
        raise UserError(f"{target}: could not be saved ({type(exc).__name__}: {exc}); "
                        "the existing file was left unchanged") from None
    finally:
        document.write_flags()
    notes = plain_keras_notes(document, plan)
    if portable and document.stop_points:
        notes.append(f"portable copy: {len(document.stop_points)} stop-gradient point(s) dropped "
                     f"({', '.join(document.stop_points[:3])}); whoever trains it will send "
                     "gradients through them")
    elif not copy:
        document.mark_saved(target, fmt)
    return SaveReport(target, fmt, notes)


def _model_to_save(document: Document, portable: bool):
    """The model with flags written; for a portable save, the graph without stop layers."""
    if not (portable and document.stop_points):
        document.write_flags()
        return document.model
    for node in document.root.walk():
        if node.is_container:
            document.base_layers[node.path].trainable = document.layer_flag(node)
    document.write_flags()  # the base containers' cascade above reset shared layers' flags
    return document.base_layers[""]


def _layer_level_variable_flags(document: Document) -> None:
    """Legacy .h5 stores weights as trainable + non-trainable, and loading expects the order a
    freshly loaded model has, where a variable is trainable iff it was created trainable in
    a trainable layer: a per-weight freeze would reorder them. Per-weight state is kept in
    FreezeStudio's own state instead (`write_flags` restores it after)."""
    for weight in document.weights:
        if weight.freezable:
            weight.variable.trainable = document.layer_flag(weight.layer)


def _write(model, path: Path, fmt: str, plan) -> None:
    if fmt == formats.H5:
        _check_h5_can_hold(model)
    model.save(path)
    if fmt == formats.H5:
        _check_h5_reloads(model, path)
    write_state(path, fmt, plan.to_dict())


def _check_h5_can_hold(model) -> None:
    """Layers that keep state as file assets (TextVectorization's and StringLookup's
    vocabulary) lose it in the legacy .h5 format: the file loads, but the first call fails
    on an empty lookup table."""
    holders = [f"'{layer.name}' ({type(layer).__name__})"
               for layer in model._flatten_layers(include_self=False)
               if hasattr(layer, "save_assets")]
    if holders:
        raise UserError(f"the legacy .h5 format cannot hold the vocabulary/assets of "
                        f"{', '.join(holders[:3])}: save it as .keras instead")


def _check_h5_reloads(model, path: Path) -> None:
    """Keras 3 writes some models to .h5 that it cannot read back (e.g. MultiHeadAttention's
    weights come back in another order): read the new file before it replaces anything."""
    import keras

    classes = {type(layer).__name__: type(layer)
               for layer in model._flatten_layers(include_self=False)}
    try:
        keras.saving.load_model(path, custom_objects=classes, compile=False, safe_mode=False)
    except Exception as exc:  # noqa: BLE001 - any failure means the .h5 is not usable
        raise UserError(f"Keras cannot read this model back from the legacy .h5 format "
                        f"({first_line(exc, 200, default='')}); save it as .keras instead") \
            from None


def _replace_file(target: Path, write) -> None:
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.stem}.", suffix=target.suffix,
                                    dir=target.parent if str(target.parent) else ".")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        tmp.unlink()
        write(tmp)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


def _replace_directory(target: Path, write) -> None:
    parent = target.parent if str(target.parent) else Path(".")
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=parent))
    backup = parent / f".{target.name}.old"
    try:
        shutil.rmtree(tmp)
        write(tmp)
        if target.exists():
            shutil.rmtree(backup, ignore_errors=True)
            os.replace(target, backup)
        os.replace(tmp, target)
        shutil.rmtree(backup, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
        if backup.exists() and not target.exists():
            os.replace(backup, target)


def plain_keras_notes(document: Document, plan) -> list[str]:
    """What a reload in plain Keras (without FreezeStudio) will not reproduce."""
    notes = []
    if document.source_format == formats.SAVEDMODEL:
        return notes
    per_weight = [w.id for w in document.weights if w.freezable
                  and document.is_weight_trainable(w) != document.layer_flag(w.layer)]
    if per_weight:
        notes.append(
            f"{len(per_weight)} weight(s) are frozen on their own (e.g. {per_weight[0]}): "
            "Keras does not store a variable's own flag, so plain Keras will train them; "
            "FreezeStudio restores them from the file")
    holders = [n.path for n in document.root.walk()
               if not n.is_container and getattr(n.layer, "_layers", None)
               and document.trainable_state(n) is False
               and any(w.freezable for w in n.all_weights())]
    if holders:
        notes.append(
            f"{len(holders)} frozen layer(s) hold sub-layers (e.g. {holders[0]}): plain Keras "
            "does not pass a reloaded layer's trainable=False on to its sub-layers, so it would "
            "train their weights; FreezeStudio restores the freeze from the file")
    if plan.stop_gradient_after:
        notes.append("the model contains FreezeStudio stop-gradient layers: loading it without "
                     "FreezeStudio needs `import freezestudio.core.graph.stop_gradient_layer` "
                     "first "
                     "(or save a portable copy, which drops them)")
    return notes


# Public names for the atomic write-then-rename helpers (used by `freezestudio.core.export`).
replace_file = _replace_file
replace_directory = _replace_directory
