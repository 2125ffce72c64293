"""Saving a document: write to a staging folder beside the target, then rename it over.

A failure at any point (serialization, disk full, a kill before the rename) leaves the
original file or directory byte-for-byte as it was; a killed save's staging folder is
removed by the next save of that target (`atomic`).

Every `.keras`/`.h5` save keeps a usable compile config (optimizer, loss, metrics), so plain
Keras can `fit` the file without `compile()`: the document's (the original file's, or what
a FreezeStudio run trained with). The model is compiled with it only for the write and put
back uncompiled after (FreezeStudio's engine builds its own step and optimizer). What was
written, or why nothing could be, is said in the report's notes.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field
from pathlib import Path

from freezestudio.core.errors import UserError, first_line
from freezestudio.core.files import formats
from freezestudio.core.files.atomic import replace_directory, replace_file
from freezestudio.core.files.lora_store import adapter_entries, write_adapters
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
                  copy: bool = False, merge_lora: bool = False) -> SaveReport:
    """Saves the edited model with its flags and FreezeStudio state.

    Args:
        document: what to save.
        target: `.keras`/`.h5` file, or a directory for generic SavedModels.
        portable: drop the stop-gradient layers (identity at inference) so plain Keras
            loads the file without FreezeStudio; the document itself keeps them.
        copy: write a copy (an export): the document keeps its own file and its
            modified flag. A portable save is always a copy.
        merge_lora: write LoRA adapters merged into their kernels: a plain model (the
            document keeps its adapters). Otherwise the file holds what Keras writes
            (merged kernels, `lora_rank` in the config, both matrices zero: plain Keras
            computes the same) and FreezeStudio keeps each adapter's own values beside
            it (`lora_store.py`), so a reopened model trains them on.

    Raises:
        UserError: unsupported target or the write failed (the original is untouched).
    """
    from freezestudio.core.edits.plans import derive_plan

    target = Path(target)
    fmt = format_for_target(document, target)
    from freezestudio.core.edits import lora

    model = _model_to_save(document, portable)
    plan = derive_plan(document)
    if portable:
        plan.stop_gradient_after = []
    adapters = document.adapters() if fmt != formats.SAVEDMODEL else []
    entries = [] if merge_lora else adapter_entries(adapters)
    if merge_lora:
        plan.lora = []
        plan.trainable = [r for r in plan.trainable if "lora_kernel" not in r.match]
        values = lora.merged_adapters(adapters)
    else:
        values = lora.keras_file_values(adapters if fmt == formats.H5 else [])
    directory = target.parent if str(target.parent) else Path(".")
    if not directory.is_dir():
        raise UserError(f"{target}: the folder {directory} does not exist")
    compile_notes: list[str] = []
    compile_args = None if fmt == formats.SAVEDMODEL else \
        _compile_arguments(document, fmt, compile_notes)
    try:
        if fmt == formats.SAVEDMODEL:
            replace_directory(target, lambda tmp: _write(model, tmp, fmt, plan))
        else:
            if fmt == formats.H5:
                _layer_level_variable_flags(document)
            with values:
                replace_file(target, lambda tmp: _write(model, tmp, fmt, plan, compile_args,
                                                        compile_notes, entries))
    except UserError:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure leaves the original intact
        raise UserError(f"{target}: could not be saved ({type(exc).__name__}: {exc}); "
                        "the existing file was left unchanged") from None
    finally:
        document.write_flags()
    notes = plain_keras_notes(document, plan) + compile_notes
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


def _write(model, path: Path, fmt: str, plan, compile_args=None, notes=None,
           adapter_values=()) -> None:
    if fmt == formats.H5:
        _check_h5_can_hold(model)
    with _without_h5_legacy_warning():
        _save_compiled(model, path, fmt, compile_args, notes if notes is not None else [])
    if fmt == formats.H5:
        _check_h5_reloads(model, path)
    write_state(path, fmt, plan.to_dict())
    write_adapters(path, fmt, list(adapter_values))


_H5_LEGACY_WARNING = "You are saving your model as an HDF5 file"


class _DropH5LegacyWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(_H5_LEGACY_WARNING)


@contextlib.contextmanager
def _without_h5_legacy_warning():
    """Keras logs "...HDF5 file... considered legacy" (absl's logger, on stderr) on every
    `.h5` save: FreezeStudio writes `.h5` only when the user named one, and says itself what
    that format cannot keep, so its own writes drop that one warning (nothing else)."""
    logger = logging.getLogger("absl")
    dropper = _DropH5LegacyWarning()
    logger.addFilter(dropper)
    try:
        yield
    finally:
        logger.removeFilter(dropper)


# --- the compile config ---------------------------------------------------------------
def _compile_arguments(document: Document, fmt: str, notes: list[str]) -> dict | None:
    """The `model.compile` keyword arguments of the document's compile config (None if it
    has none, or it cannot be restored: a note says so)."""
    import keras

    config, origin = document.compile_config, document.compile_config_origin
    if not config:
        return None
    where = f"from {origin}" if origin else "kept from the original file"
    try:
        args = keras.saving.deserialize_keras_object(dict(config))
        if not isinstance(args, dict):
            raise TypeError(f"a {type(args).__name__}, not a dict")
    except Exception as exc:  # noqa: BLE001 - a custom/unregistered loss, metric, optimizer
        notes.append(f"the compile config {where} could not be restored "
                     f"({first_line(exc, 160, default=type(exc).__name__)}): the file is saved "
                     "without one, so plain Keras needs compile() before fit()")
        return None
    if fmt == formats.H5:
        args = _h5_loadable(args)
    notes.append(f"compile config {where}: {_describe(config)}")
    return args


def _h5_loadable(args: dict) -> dict:
    """Keras 3 reads a loss given by alias ("mae", "mse") back from `.h5` as the metric of
    that name and fails: losses given by name are passed as the Keras loss function."""
    import keras

    def plain(loss):
        if isinstance(loss, str):
            return keras.losses.get(loss)
        if isinstance(loss, list | tuple):
            return [plain(item) for item in loss]
        if isinstance(loss, dict):
            return {key: plain(item) for key, item in loss.items()}
        return loss

    return {**args, "loss": plain(args.get("loss"))}


def _describe(config: dict) -> str:
    """"optimizer Adam, loss mae, metrics mae" for the user."""
    def name(item):
        if isinstance(item, dict):
            if "class_name" in item:
                inner = item.get("config")
                return str(inner if isinstance(inner, str) else item["class_name"])
            return "{" + ", ".join(f"{k}: {name(v)}" for k, v in item.items()) + "}"
        if isinstance(item, list | tuple):
            return "[" + ", ".join(name(v) for v in item) + "]"
        return str(item)

    parts = [f"{key} {name(config.get(key))}" for key in ("optimizer", "loss", "metrics")
             if config.get(key)]
    return ", ".join(parts) or "empty"


def _save_compiled(model, path: Path, fmt: str, compile_args: dict | None,
                   notes: list[str]) -> None:
    """`model.save`, with the model compiled from `compile_args` for the write only.

    `.keras`: the optimizer is built on the trainable variables, as Keras's own
    `compile_from_config` does on load, so a reload finds the optimizer variables it
    expects. `.h5`: the optimizer state is dropped from the file (Keras 3.15 reloads it
    into an optimizer built for no variables, and `fit` then fails); `training_config`
    stays. A config Keras cannot serialise: saved without it, and a note says so.
    """
    if not compile_args:
        model.save(path)
        return
    try:
        with _compiled(model, compile_args, build=fmt == formats.KERAS):
            model.save(path)
    except Exception as exc:  # noqa: BLE001 - a loss or metric Keras cannot serialise
        notes[:] = [n for n in notes if not n.startswith("compile config ")]
        notes.append(f"the compile config could not be saved "
                     f"({first_line(exc, 160, default=type(exc).__name__)}): the file is saved "
                     "without one, so plain Keras needs compile() before fit()")
        if path.exists():
            path.unlink()
        model.save(path)
        return
    if fmt == formats.H5:
        import h5py

        with h5py.File(path, "a") as handle:
            if "optimizer_weights" in handle:
                del handle["optimizer_weights"]


@contextlib.contextmanager
def _compiled(model, compile_args: dict, build: bool):
    """The model compiled for the block; after it, its attributes exactly as before (so
    the document's model is not left compiled with a stale trainable set)."""
    before = dict(vars(model))
    try:
        model.compile(**compile_args)
        if build and getattr(model, "optimizer", None) is not None:
            model.optimizer.build(model.trainable_variables)
        yield
    finally:
        for key in set(vars(model)) - set(before):
            del vars(model)[key]
        vars(model).update(before)


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
    inner = [a.id for a in document.adapters()
             if a.layer is not getattr(a.kernel.layer, "layer", None)]
    if plan.lora and inner:
        notes.append(
            f"{len(inner)} LoRA adapter(s) sit inside composite layers (e.g. {inner[0]}), "
            "whose Keras config does not hold them: plain Keras reloads those kernels merged, "
            "trainable and without adapters; FreezeStudio restores the adapters")
    if plan.stop_gradient_after:
        notes.append("the model contains FreezeStudio stop-gradient layers: loading it without "
                     "FreezeStudio needs `import freezestudio.core.graph.stop_gradient_layer` "
                     "first "
                     "(or save a portable copy, which drops them)")
    return notes
